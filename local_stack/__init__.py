"""The kit's real components on loopback, for tests, benchmarks and the demo.

`LocalStack` starts livekit-server, the token endpoint and agent workers as child processes on
free ports and stops every one it started; `LocalStack.start_cluster` starts several of each on
one redis-server (a `Cluster`). It knows nothing of the harness: it starts the kit's
own commands and hands back where they listen.
"""

from local_stack.errors import StackError
from local_stack.livekit_binary import (
    LIVEKIT_SERVER_VERSION,
    REPO_ROOT,
    cached_livekit_server_path,
    find_livekit_server,
    find_redis_server,
)
from local_stack.processes import ChildProcess, free_port
from local_stack.stack import (
    AgentWorker,
    Cluster,
    ClusterPart,
    LiveKitServer,
    LocalStack,
    RedisServer,
    TokenServer,
)

__all__ = [
    "LIVEKIT_SERVER_VERSION",
    "REPO_ROOT",
    "AgentWorker",
    "ChildProcess",
    "Cluster",
    "ClusterPart",
    "LiveKitServer",
    "LocalStack",
    "RedisServer",
    "StackError",
    "TokenServer",
    "cached_livekit_server_path",
    "find_livekit_server",
    "find_redis_server",
    "free_port",
]
