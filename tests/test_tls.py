"""Over TLS: the reader's raw hot path on an SSL socket (non-blocking reads, SSL-buffered
data that poll() cannot see), publish_many's replies, and a reconnect.

Redis 7 from PATH serves TLS (Debian builds it with OpenSSL); the bundled Valkey binary is
built without TLS, so these tests use redis-server only. The certificate is made by the
fixture with the openssl command.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
import redis
from conftest import wait_until

from redis_toolkit_nb import RedisServer, RedisToolkit
from redis_toolkit_nb.embedded import free_port


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory):
    openssl = shutil.which("openssl")
    binary = shutil.which("redis-server")
    if not openssl or not binary:
        pytest.fail("openssl and redis-server are needed for the TLS tests")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    port = free_port()
    args = ["--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key)]
    args += ["--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no"]
    with RedisServer(binary, extra_args=args) as srv:
        yield srv, port, str(cert)


def _client(tls_server) -> redis.Redis:
    _srv, port, ca = tls_server
    return redis.Redis(host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=ca)


def test_subscribe_patterns_and_bulk_publish_over_tls(tls_server):
    got: list[tuple[str, object]] = []
    sub = RedisToolkit(
        redis=_client(tls_server),
        channels=["tls", "tls.*"],
        message_handler=lambda c, d: got.append((c, d)),
    )
    pub = RedisToolkit(redis=_client(tls_server))
    try:
        assert sub.client.connection_pool.connection_class is redis.SSLConnection
        # 100,000 messages in 50 writes: reads that end mid-record, SSL-buffered data.
        assert pub.publish_many("tls", range(100_000)) == 100_000
        assert pub.publisher("tls.x", {"deep": [1, {"b": None}]}) == 1
        wait_until(lambda: len(got) == 100_001, 30, "100,001 messages over TLS")
        assert [d for c, d in got[:100_000]] == list(range(100_000))
        assert got[-1] == ("tls.x", {"deep": [1, {"b": None}]})
        s = sub.stats
        assert (s.received, s.delivered, s.dropped, s.disconnects) == (100_001, 100_001, 0, 0)
    finally:
        sub.cleanup()
        pub.cleanup()


def test_reconnect_over_tls(tls_server):
    srv, _port, _ca = tls_server
    got: list[object] = []
    sub = RedisToolkit(
        redis=_client(tls_server),
        channels=["tls.kill", "tls.k*"],
        message_handler=lambda c, d: got.append(d),
    )
    admin = redis.Redis.from_url(srv.url)  # the plain port, for the fault
    try:
        assert admin.client_kill_filter(_type="pubsub") >= 1  # the fault happened
        wait_until(lambda: sub.stats.reconnects >= 1, 10, "the reconnect over TLS")
        wait_until(lambda: sub.stats.patterns == ("tls.k*",), 10, "the pattern restored")
        assert sub.stats.channels == ("tls.kill",)
        assert admin.publish("tls.kill", '"after"') == 2  # channel + matching pattern
        wait_until(lambda: got == ["after", "after"], 10, "the message after the reconnect")
    finally:
        sub.cleanup()
        admin.close()
