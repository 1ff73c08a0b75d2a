"""The fault tools stand in for a processor that misbehaves; one left behind must not answer for
a later test's "silent" or "closed" port."""
import socket

import pytest

from tests.billing.faults import AnswerDroppingProxy, closed_port


def test_a_closed_proxy_stops_listening_on_its_port():
    proxy = AnswerDroppingProxy(f"http://127.0.0.1:{closed_port()}")
    port = int(proxy.url.rsplit(":", 1)[1])

    proxy.close()

    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)
