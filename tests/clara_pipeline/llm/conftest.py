from typing import Callable, Iterator

import pytest

from clara_pipeline.llm.loopback import LoopbackServer


@pytest.fixture
def loopback() -> Iterator[Callable[..., LoopbackServer]]:
    """Starts loopback servers with the given options; all are stopped at teardown."""
    servers = []

    def start(**kwargs) -> LoopbackServer:
        server = LoopbackServer(**kwargs).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
