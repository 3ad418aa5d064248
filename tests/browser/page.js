// What a web app does with the kit's token endpoint, written against livekit-client's public API:
// TokenSource.endpoint fetches the token (a cross-origin POST with an X-API-Key header, so the
// browser sends a CORS preflight first), then a Room connects, publishes the microphone (Chromium's
// fake device) and listens to the agent. Each function returns plain data (what the page saw);
// tests/e2e/test_browser.py makes the assertions.
import {
  ParticipantKind,
  Room,
  RoomEvent,
  Track,
  TokenSource,
} from './livekit-client.esm.mjs';

const AGENT_STATE = 'lk.agent.state';
const TRANSCRIBED_TRACK = 'lk.transcribed_track_id';

function errorData(error) {
  return { name: String(error?.name ?? 'Error'), message: String(error?.message ?? error) };
}

function endpoint(tokenUrl, apiKey) {
  return TokenSource.endpoint(tokenUrl, { headers: { 'X-API-Key': apiKey } });
}

function fetchOptions({ roomName, participantName, agentName }) {
  const options = { roomName, participantName };
  if (agentName) options.agentName = agentName; // sent as room_config.agents[0].agent_name
  return options;
}

/** Only the token request: {ok, serverUrl, hasToken} or {ok: false, error: {name, message}}. */
export async function askToken({ tokenUrl, apiKey, roomName, participantName, agentName }) {
  try {
    const details = await endpoint(tokenUrl, apiKey).fetch(
      fetchOptions({ roomName, participantName, agentName }),
    );
    return { ok: true, serverUrl: details.serverUrl, hasToken: !!details.participantToken };
  } catch (error) {
    return { ok: false, error: errorData(error) };
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Level of the agent's audio as the page hears it: an AnalyserNode on the received track. */
function listen(track) {
  const context = new AudioContext();
  const source = context.createMediaStreamSource(new MediaStream([track.mediaStreamTrack]));
  const analyser = context.createAnalyser();
  analyser.fftSize = 2048;
  source.connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  return {
    context,
    level() {
      analyser.getFloatTimeDomainData(samples);
      let sum = 0;
      let peak = 0;
      for (const x of samples) {
        sum += x * x;
        peak = Math.max(peak, Math.abs(x));
      }
      return { rms: Math.sqrt(sum / samples.length), peak };
    },
  };
}

/** The inbound-rtp audio entry of the agent's track (bytes, level, energy), or null. */
async function inboundAudio(track) {
  const report = await track.getRTCStatsReport();
  for (const entry of report?.values() ?? []) {
    if (entry.type === 'inbound-rtp' && entry.kind === 'audio') {
      return {
        bytesReceived: entry.bytesReceived ?? 0,
        packetsReceived: entry.packetsReceived ?? 0,
        audioLevel: entry.audioLevel ?? 0,
        totalAudioEnergy: entry.totalAudioEnergy ?? 0,
        totalSamplesDuration: entry.totalSamplesDuration ?? 0,
      };
    }
  }
  return null;
}

/**
 * One call: token, connect, fake microphone, the agent's arrival, its greeting (audio and
 * lk.transcription text), until the agent has spoken and stopped (or `deadlineMs` passed).
 */
export async function call({
  tokenUrl,
  apiKey,
  roomName,
  participantName,
  deadlineMs,
  tailMs = 1000,
}) {
  const started = performance.now();
  const now = () => Math.round(performance.now() - started);
  const result = {
    stage: 'token',
    events: [],
    transcripts: [],
    levels: [],
    stats: [],
    agent: null,
    microphone: null,
    error: null,
  };
  const note = (what, extra = {}) => result.events.push({ t: now(), what, ...extra });
  const room = new Room();
  let listener = null;
  let agentTrack = null;
  const states = [];

  room.registerTextStreamHandler('lk.transcription', async (reader, from) => {
    const info = reader.info;
    try {
      const text = await reader.readAll();
      result.transcripts.push({
        t: now(),
        from: from.identity,
        text,
        attributes: { ...(info.attributes ?? {}) },
      });
    } catch (error) {
      note('transcript_error', errorData(error));
    }
  });
  room.on(RoomEvent.ParticipantConnected, (p) =>
    note('participant_connected', { identity: p.identity, kind: ParticipantKind[p.kind] }),
  );
  room.on(RoomEvent.ParticipantAttributesChanged, (changed, p) => {
    if (AGENT_STATE in changed && p.isAgent) {
      states.push(changed[AGENT_STATE]);
      note('agent_state', { state: changed[AGENT_STATE] });
    }
  });
  room.on(RoomEvent.TrackSubscribed, (track, publication, p) => {
    note('track_subscribed', { identity: p.identity, kind: track.kind, sid: publication.trackSid });
    if (track.kind === Track.Kind.Audio && p.isAgent && !agentTrack) {
      agentTrack = { track, sid: publication.trackSid };
      // An <audio> element plays it (Chromium feeds a remote WebRTC track to WebAudio only
      // while a media element plays it); the analyser reads what is played.
      document.body.appendChild(track.attach());
      listener = listen(track);
    }
  });
  room.on(RoomEvent.Disconnected, (reason) => note('disconnected', { reason }));

  try {
    const details = await endpoint(tokenUrl, apiKey).fetch(
      fetchOptions({ roomName, participantName }),
    );
    note('token', { serverUrl: details.serverUrl });

    result.stage = 'connect';
    // No ICE servers: everything is on loopback, and nothing may reach out past it.
    await room.connect(details.serverUrl, details.participantToken, {
      rtcConfig: { iceServers: [] },
    });
    note('connected', { room: room.name, identity: room.localParticipant.identity });
    await room.startAudio();

    result.stage = 'microphone';
    const mic = await room.localParticipant.setMicrophoneEnabled(true);
    result.microphone = {
      published: !!mic,
      sid: mic?.trackSid ?? null,
      label: mic?.track?.mediaStreamTrack?.label ?? null,
    };
    note('microphone_published');

    result.stage = 'agent';
    const deadline = started + deadlineMs;
    let agent = null;
    while (!agent && performance.now() < deadline) {
      agent = [...room.remoteParticipants.values()].find((p) => p.isAgent) ?? null;
      if (!agent) await sleep(100);
    }
    if (!agent) throw new Error(`no agent participant joined within ${deadlineMs} ms`);
    result.agent = {
      identity: agent.identity,
      kind: ParticipantKind[agent.kind],
      isAgent: agent.isAgent,
      attributes: { ...agent.attributes },
      joinedAfterMs: now(),
    };

    result.stage = 'greeting';
    // Sample the agent's audio until it has spoken and gone quiet again, its transcript is in,
    // and `tailMs` more have passed; or until the deadline.
    let doneAt = null;
    while (performance.now() < deadline) {
      if (agentTrack) {
        result.levels.push({ t: now(), ...listener.level() });
        const stats = await inboundAudio(agentTrack.track);
        if (stats) result.stats.push({ t: now(), ...stats });
      }
      const spoke = states.includes('speaking') && states.at(-1) !== 'speaking';
      const ownText = result.transcripts.some(
        (s) => s.from === agent.identity && s.attributes[TRANSCRIBED_TRACK] === agentTrack?.sid,
      );
      if (doneAt === null && spoke && ownText) doneAt = performance.now() + tailMs;
      if (doneAt !== null && performance.now() >= doneAt) break;
      await sleep(50);
    }
    result.agent.audioTrackSid = agentTrack?.sid ?? null;
    result.agent.states = states;
    result.stage = 'done';
  } catch (error) {
    result.error = errorData(error);
  } finally {
    result.roomSid = room.state === 'connected' ? await room.getSid().catch(() => null) : null;
    await room.disconnect();
    await listener?.context.close();
    note('left');
  }
  return result;
}
