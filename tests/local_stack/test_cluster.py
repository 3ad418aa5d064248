"""The local cluster: redis-server, livekit-server nodes sharing it, and `start_cluster`'s agent
workers and token-server replicas spread over the nodes."""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx
import pytest
from livekit import api

from local_stack import ClusterPart, LocalStack, StackError

pytestmark = pytest.mark.integration


async def test_two_nodes_on_one_redis_share_their_rooms(tmp_path: Path) -> None:
    secret = secrets.token_urlsafe(32)
    with LocalStack(log_dir=tmp_path) as stack:
        redis = stack.start_redis()
        a = stack.start_livekit(api_secret=secret, redis=redis)
        b = stack.start_livekit(api_secret=secret, redis=redis)
        assert a.url != b.url
        async with (
            api.LiveKitAPI(a.http_url, a.api_key, secret) as on_a,
            api.LiveKitAPI(b.http_url, b.api_key, secret) as on_b,
        ):
            await on_a.room.create_room(api.CreateRoomRequest(name="made-on-a"))
            listed = await on_b.room.list_rooms(api.ListRoomsRequest(names=["made-on-a"]))
        assert [room.name for room in listed.rooms] == ["made-on-a"]
        children = [redis.process, a.process, b.process]
    assert not any(child.alive() for child in children)


TEXT_AGENT = {"AGENT_PROVIDER": "offline", "AGENT_TEXT_ONLY": "1", "AGENT_IDLE_PROCESSES": "1"}


def test_a_cluster_spreads_workers_and_replicas_over_its_nodes(tmp_path: Path) -> None:
    """Worker i registers with node i % N, replica j dispatches through node j % N and hands
    callers that node; every replica gets the shared Redis; the stack stops all of it."""
    with LocalStack(log_dir=tmp_path) as stack:
        cluster = stack.start_cluster(
            "cluster-agent", nodes=2, workers=3, replicas=3, agent_env=TEXT_AGENT
        )
        assert cluster.redis is not None
        a, b = cluster.nodes
        assert a.api_secret == b.api_secret and a.url != b.url
        expected = [a, b, a]
        for worker, node in zip(cluster.workers, expected, strict=True):
            assert cluster.node_for(worker) == node
            assert worker.process.env["LIVEKIT_URL"] == node.url
            assert "registered worker" in worker.process.log_text()
        for j, (replica, node) in enumerate(zip(cluster.token_servers, expected, strict=True)):
            assert cluster.node_for(replica) == node
            assert replica.process.env["REDIS_URL"] == cluster.redis.url
            assert replica.process.env["AGENT_NAME"] == "cluster-agent"
            body = httpx.post(replica.endpoint, json={"room_name": f"spread-{j}"})
            assert body.status_code == 200, body.text
            assert body.json()["serverUrl"] == node.url == replica.public_url
        processes = cluster.processes()
        assert len(processes) == 1 + 2 + 3 + 3 and all(p.alive() for p in processes)
    assert not any(p.alive() for p in processes)


def test_one_node_and_one_replica_need_no_redis(tmp_path: Path) -> None:
    """The demo's default (today's stack): no redis-server is started or handed out."""
    with LocalStack(log_dir=tmp_path) as stack:
        cluster = stack.start_cluster("solo-agent", workers=0)
        assert cluster.redis is None
        assert [p.name.split("-")[0] for p in cluster.processes()] == ["livekit", "token"]
        assert "REDIS_URL" not in cluster.token_servers[0].process.env
        with pytest.raises(ValueError, match="shared redis-server"):
            stack.start_cluster("x", nodes=2, redis=False)
        assert len(stack._children) == 2  # the refused cluster started nothing


def test_a_failed_cluster_start_leaves_nothing_behind(tmp_path: Path) -> None:
    started: list[ClusterPart] = []
    with LocalStack(log_dir=tmp_path) as stack:
        before = stack.start_livekit()  # the stack's own earlier child is not the cluster's
        with pytest.raises(StackError, match="AGENT_PROVIDER='nonsense'"):
            stack.start_cluster(
                "broken-agent",
                nodes=2,
                workers=1,
                replicas=1,
                agent_env={"AGENT_PROVIDER": "nonsense"},
                started=started.append,
            )
        assert [type(p).__name__ for p in started] == [
            "RedisServer",
            "LiveKitServer",
            "LiveKitServer",
            "TokenServer",
        ]
        assert not any(p.process.alive() for p in started)
        assert stack._children == [before.process] and before.process.alive()
