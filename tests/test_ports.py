"""A port picked as free can be taken by another process before the server binds it (client
sockets draw from the same range): a server on a port it picked itself tries another one, and
an embedded cluster node gets new ports when its bus port was taken. An explicit port is never
replaced. The answer to the start-up PING must come from the server's own process."""

from __future__ import annotations

import socket

import pytest
import redis

from redis_toolkit_nb import EmbeddedServerError, RedisServer
from redis_toolkit_nb.embedded import bundled_binary
from redis_toolkit_nb.embedded._cluster import EmbeddedCluster, _bus_port


def _occupy(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen()
    return sock


def test_a_server_whose_picked_port_was_taken_starts_on_another():
    server = RedisServer(bundled_binary())
    taken = server.port
    thief = _occupy(taken)
    try:
        with server:
            assert server.port != taken
            assert redis.Redis(port=server.port).ping()
    finally:
        thief.close()


def test_an_explicit_port_that_is_taken_is_an_error(make_server):
    other = make_server("redis")  # a real server holds the port: its PING must not count
    with pytest.raises(EmbeddedServerError, match="Address already in use"):
        RedisServer(bundled_binary(), port=other.port).start()


def test_an_embedded_cluster_node_whose_bus_port_was_taken_gets_new_ports():
    cluster = EmbeddedCluster(masters=3, replicas=0, watch_parent=False)
    taken = _bus_port(cluster.nodes[0])
    thief = _occupy(taken)
    try:
        cluster.start()
        try:
            assert _bus_port(cluster.nodes[0]) != taken
            with redis.Redis(port=cluster.masters()[0]) as c:
                assert c.cluster("info")["cluster_state"] == "ok"
        finally:
            cluster.stop()
    finally:
        thief.close()
