"""HTTP archive download: resume, retries, size checks and SSRF refusals, against a real server."""

from __future__ import annotations

import email.utils
import hashlib
import ipaddress
import random
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from datastore.backends import http as http_fetch
from datastore.backends.http import check_address, check_url, download, redact, resolve_checked
from datastore.errors import DownloadFailed, UrlRefused
from datastore.model import progress
from datastore.testing.http_server import Server, serve

SIZE = 3 * 1024 * 1024 + 12345  # several 1 MiB chunks plus a ragged end
PAYLOAD = random.Random(7).randbytes(SIZE)
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class Sleeps(list):
    """Records the delays download() asked for instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def server() -> Iterator[Server]:
    with serve({"/data.bin": PAYLOAD, "/small.txt": b"hello\n"}) as s:
        yield s


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def _get(server: Server, path: str = "/data.bin") -> list[dict[str, str]]:
    return [h for m, _p, h in server.requests_for(path) if m == "GET"]


def _sidecar(dest: Path) -> Path:
    return dest.with_suffix(dest.suffix + ".part.json")


# --- downloads --------------------------------------------------------------------------------


def test_plain_download_reports_progress(server: Server, tmp_path: Path, sleeps: Sleeps) -> None:
    p = progress.Progress()
    got = download(server.url("/data.bin"), tmp_path / "a.bin", True, sleep=sleeps, reporter=p)
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD
    assert (got.size, got.sha256, got.attempts, got.resumed) == (SIZE, SHA, 1, False)
    assert got.url == server.url("/data.bin")
    assert got.etag and got.etag.startswith('"') and got.last_modified
    assert (p.files_total, p.bytes_total, p.bytes_done) == (0, SIZE, SIZE)
    assert _get(server)[0]["Accept-Encoding"] == "identity"
    assert sleeps == []


def test_resume_after_drop_at_60_percent(server: Server, tmp_path: Path, sleeps: Sleeps) -> None:
    server.configure("/data.bin", drop_at=0.6)
    p = progress.Progress()
    got = download(server.url("/data.bin"), tmp_path / "a.bin", True, sleep=sleeps, reporter=p)
    n = int(SIZE * 0.6)
    first, second = _get(server)
    assert "Range" not in first
    assert second["Range"] == f"bytes={n}-"
    assert second["If-Range"] == got.etag
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD
    assert (got.size, got.sha256, got.attempts, got.resumed) == (SIZE, SHA, 2, True)
    assert len(sleeps) == 1
    assert (p.bytes_total, p.bytes_done) == (SIZE, SIZE)  # resumed bytes are not counted twice
    assert not _sidecar(tmp_path / "a.bin").exists()


def test_resume_with_last_modified_only(server: Server, tmp_path: Path, sleeps: Sleeps) -> None:
    server.configure("/data.bin", drop_at=0.3, etag=False)
    got = download(server.url("/data.bin"), tmp_path / "a.bin", True, sleep=sleeps)
    second = _get(server)[1]
    assert second["Range"] == f"bytes={int(SIZE * 0.3)}-"
    assert second["If-Range"] == got.last_modified
    assert (got.sha256, got.resumed, got.etag) == (SHA, True, None)


def test_weak_etag_is_not_used_for_if_range(server: Server, tmp_path: Path, sleeps: Sleeps) -> None:
    server.configure("/data.bin", drop_at=0.3, weak_etag=True)
    got = download(server.url("/data.bin"), tmp_path / "a.bin", True, sleep=sleeps)
    second = _get(server)[1]
    assert second["If-Range"] == got.last_modified  # falls back to the date, never W/"…"
    assert got.sha256 == SHA


def test_resume_across_calls_uses_the_sidecar(server: Server, tmp_path: Path, sleeps: Sleeps) -> None:
    dest = tmp_path / "a.tar.gz"
    server.configure("/data.bin", drop_at=0.5)
    with pytest.raises(DownloadFailed) as info:
        download(server.url("/data.bin"), dest, True, max_attempts=1, sleep=sleeps)
    assert info.value.transient
    assert "body cut short" in str(info.value)
    assert dest.stat().st_size == int(SIZE * 0.5)
    assert _sidecar(dest).name == "a.tar.gz.part.json" and _sidecar(dest).exists()

    got = download(server.url("/data.bin"), dest, True, sleep=sleeps)
    assert _get(server)[-1]["Range"] == f"bytes={int(SIZE * 0.5)}-"
    assert (got.sha256, got.size, got.resumed, got.attempts) == (SHA, SIZE, True, 1)
    assert dest.read_bytes() == PAYLOAD
    assert not _sidecar(dest).exists()


def test_sidecar_of_another_url_is_ignored(server: Server, tmp_path: Path, sleeps: Sleeps) -> None:
    dest = tmp_path / "a.bin"
    dest.write_bytes(b"x" * 1000)
    _sidecar(dest).write_text('{"url": "http://elsewhere.example/a.bin", "validator": "\\"v\\"", "bytes": 1000}')
    got = download(server.url("/data.bin"), dest, True, sleep=sleeps)
    assert "Range" not in _get(server)[0]
    assert (got.sha256, got.resumed) == (SHA, False)
    assert dest.read_bytes() == PAYLOAD


def test_server_ignoring_range_gives_full_download(server: Server, tmp_path: Path, sleeps: Sleeps) -> None:
    server.configure("/data.bin", drop_at=0.6, ignore_range=True)
    got = download(server.url("/data.bin"), tmp_path / "a.bin", True, sleep=sleeps)
    assert "Range" in _get(server)[1]  # asked for the rest, got the whole file (200)
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD
    assert (got.sha256, got.size, got.resumed, got.attempts) == (SHA, SIZE, False, 2)


def test_etag_changing_between_attempts_gives_full_download(server: Server, tmp_path: Path, sleeps: Sleeps) -> None:
    server.configure("/data.bin", drop_at=0.6, etag_changes=True)
    got = download(server.url("/data.bin"), tmp_path / "a.bin", True, sleep=sleeps)
    second = _get(server)[1]
    assert second["If-Range"] != got.etag  # the old validator failed, so If-Range sent it all
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD
    assert (got.sha256, got.size, got.resumed) == (SHA, SIZE, False)


def test_500_twice_then_ok_backs_off(server: Server, tmp_path: Path, sleeps: Sleeps) -> None:
    server.configure("/data.bin", status_sequence=[500, 500])
    got = download(server.url("/data.bin"), tmp_path / "a.bin", True, sleep=sleeps)
    assert (got.attempts, got.sha256) == (3, SHA)
    assert len(sleeps) == 2
    assert 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 2.0  # exponential, with jitter


def test_500_forever_fails_after_max_attempts(server: Server, tmp_path: Path, sleeps: Sleeps) -> None:
    server.configure("/data.bin", status_sequence=[500] * 20)
    with pytest.raises(DownloadFailed) as info:
        download(server.url("/data.bin"), tmp_path / "a.bin", True, max_attempts=6, sleep=sleeps)
    assert info.value.reason == "HTTP 500 after 6 attempts"
    assert str(info.value).startswith(f"downloading {server.url('/data.bin')!r} failed: HTTP 500 after 6 attempts")
    assert info.value.transient
    assert len(_get(server)) == 6 and len(sleeps) == 5
    assert all(2**i / 2 <= d <= 2**i for i, d in enumerate(sleeps))  # 1, 2, 4, 8, 16 s with jitter


def test_429_honours_retry_after_seconds(server: Server, tmp_path: Path, sleeps: Sleeps) -> None:
    server.configure("/data.bin", status_sequence=[429], retry_after=2)
    got = download(server.url("/data.bin"), tmp_path / "a.bin", True, sleep=sleeps)
    assert sleeps == [2]
    assert (got.attempts, got.sha256) == (2, SHA)


def test_retry_after_http_date_and_cap(server: Server, tmp_path: Path, sleeps: Sleeps) -> None:
    server.configure("/data.bin", status_sequence=[503], retry_after=email.utils.formatdate(time.time() + 30, usegmt=True))
    download(server.url("/data.bin"), tmp_path / "a.bin", True, sleep=sleeps)
    server.configure("/data.bin", status_sequence=[503], retry_after=3600)
    download(server.url("/data.bin"), tmp_path / "b.bin", True, sleep=sleeps)
    assert 25 <= sleeps[0] <= 30
    assert sleeps[1] == 60


@pytest.mark.parametrize(("status", "text"), [(404, "HTTP 404 Not Found"), (403, "HTTP 403 Forbidden"), (410, "HTTP 410 Gone")])
def test_client_errors_fail_at_once(server: Server, tmp_path: Path, sleeps: Sleeps, status: int, text: str) -> None:
    server.configure("/data.bin", status_sequence=[status])
    with pytest.raises(DownloadFailed) as info:
        download(server.url("/data.bin"), tmp_path / "a.bin", True, sleep=sleeps)
    assert info.value.reason == text
    assert not info.value.transient
    assert sleeps == [] and len(_get(server)) == 1


def test_missing_path_is_404(server: Server, tmp_path: Path, sleeps: Sleeps) -> None:
    with pytest.raises(DownloadFailed, match="HTTP 404"):
        download(server.url("/nope.zip"), tmp_path / "a.bin", True, sleep=sleeps)


def test_content_length_lie_with_validators_fails(server: Server, tmp_path: Path, sleeps: Sleeps) -> None:
    server.configure("/data.bin", content_length=SIZE + 1000)
    with pytest.raises(DownloadFailed) as info:
        download(server.url("/data.bin"), tmp_path / "a.bin", True, sleep=sleeps)
    # The resume request finds the file already complete at a size the server never announced.
    assert info.value.reason == f"the server announced {SIZE + 1000} bytes but now reports {SIZE}"
    assert not info.value.transient


def test_content_length_lie_without_validators_fails(server: Server, tmp_path: Path, sleeps: Sleeps) -> None:
    server.configure("/data.bin", content_length=SIZE + 1000, etag=False, last_modified=False)
    with pytest.raises(DownloadFailed) as info:
        download(server.url("/data.bin"), tmp_path / "a.bin", True, max_attempts=3, sleep=sleeps)
    assert info.value.reason.startswith(f"body cut short at {SIZE} of {SIZE + 1000} bytes")
    assert info.value.reason.endswith("after 3 attempts")
    assert info.value.transient
    assert all("Range" not in h for h in _get(server))  # nothing to resume with


def test_relative_redirect_is_followed(server: Server, tmp_path: Path, sleeps: Sleeps) -> None:
    server.configure("/old.bin", redirect="/data.bin?v=1")
    got = download(server.url("/old.bin"), tmp_path / "a.bin", True, sleep=sleeps)
    assert got.url == server.url("/data.bin") + "?v=1"
    assert (got.sha256, got.attempts) == (SHA, 1)


def test_redirect_loop_fails(server: Server, tmp_path: Path, sleeps: Sleeps) -> None:
    server.configure("/loop", redirect="/loop")
    with pytest.raises(DownloadFailed, match="more than 2 redirects"):
        download(server.url("/loop"), tmp_path / "a.bin", True, max_redirects=2, sleep=sleeps)
    assert len(server.requests_for("/loop")) == 3


def test_connection_refused_is_retried_then_transient(tmp_path: Path, sleeps: Sleeps) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadFailed) as info:
        download(f"http://127.0.0.1:{port}/a.zip", tmp_path / "a.bin", True, max_attempts=2, sleep=sleeps)
    assert info.value.reason == "connection failed (Connection refused) after 2 attempts"
    assert info.value.transient and len(sleeps) == 1


# --- pinned connections -----------------------------------------------------------------------


def _rebinding_resolver(monkeypatch: pytest.MonkeyPatch, name: str, first: str, later: str) -> list[str]:
    """Make ``name`` resolve to ``first`` once and to ``later`` afterwards (a DNS rebinding attack)."""
    real = socket.getaddrinfo
    calls: list[str] = []

    def fake(host, port, *args, **kw):  # type: ignore[no-untyped-def]
        if host == name:
            calls.append(host)
            return real(first if len(calls) == 1 else later, port, *args, **kw)
        return real(host, port, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return calls


def test_connection_goes_to_the_checked_address(server: Server, tmp_path: Path, sleeps: Sleeps,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _rebinding_resolver(monkeypatch, "archive.test", "127.0.0.1", "169.254.169.254")
    got = download(f"http://archive.test:{server.port}/data.bin", tmp_path / "a.bin", True, sleep=sleeps,
                   timeout=(2, 10))
    assert got.sha256 == SHA
    assert calls == ["archive.test"]  # resolved once, by the check; the connect never re-resolved
    assert _get(server)[0]["Host"] == f"archive.test:{server.port}"  # the name, not the IP


def _tls_files(tmp_path: Path, name: str) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for ``name`` signed by it."""
    pytest.importorskip("cryptography")
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "datastore test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_pem, cert_pem, key_pem = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return ca_pem, cert_pem, key_pem


@pytest.mark.parametrize(("cert_name", "ok"), [("archive.test", True), ("other.test", False)])
def test_https_verifies_the_host_name_while_pinned(tmp_path: Path, sleeps: Sleeps, monkeypatch: pytest.MonkeyPatch,
                                                   cert_name: str, ok: bool) -> None:
    ca_pem, cert_pem, key_pem = _tls_files(tmp_path, cert_name)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_pem, key_pem)
    monkeypatch.setattr(requests.adapters, "DEFAULT_CA_BUNDLE_PATH", str(ca_pem))  # trust only the test CA
    _rebinding_resolver(monkeypatch, "archive.test", "127.0.0.1", "169.254.169.254")
    with serve({"/data.bin": PAYLOAD}, ssl_context=ctx) as tls:
        url = f"https://archive.test:{tls.port}/data.bin"
        if ok:  # SNI and certificate check use the name although the socket went to 127.0.0.1
            assert download(url, tmp_path / "a.bin", True, sleep=sleeps).sha256 == SHA
        else:
            with pytest.raises(DownloadFailed, match="TLS certificate could not be verified") as info:
                download(url, tmp_path / "a.bin", True, sleep=sleeps)
            assert not info.value.transient and sleeps == []


# --- SSRF -------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/",
    "http://[::ffff:169.254.169.254]/",
    "http://[::ffff:a9fe:a9fe]/",
    "http://[fd00:ec2::254]/",
    "http://100.100.100.200/latest/meta-data/",
    "http://[2002:a9fe:a9fe::1]/",  # 6to4 around the metadata address
    "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 around it
    "http://2852039166/",  # 169.254.169.254 written as one decimal number
    "http://[fe80::1]/",
])
def test_metadata_and_link_local_refused_even_when_private_allowed(url: str, tmp_path: Path) -> None:
    with pytest.raises(UrlRefused) as info:
        download(url, tmp_path / "a.bin", True)
    assert "link-local/cloud metadata address" in info.value.reason
    assert info.value.hint == "datastore only fetches public archive URLs"
    assert not (tmp_path / "a.bin").exists()


def test_metadata_message(tmp_path: Path) -> None:
    with pytest.raises(UrlRefused) as info:
        download("http://169.254.169.254/latest/meta-data/", tmp_path / "a.bin", False)
    assert str(info.value) == ("refusing to fetch 'http://169.254.169.254/latest/meta-data/': 169.254.169.254 is a "
                               "link-local/cloud metadata address: datastore only fetches public archive URLs")


@pytest.mark.parametrize("url", ["http://0.0.0.0:{port}/data.bin", "http://[::]:{port}/data.bin",
                                 "http://224.0.0.1/", "http://240.0.0.1/", "http://255.255.255.255/"])
def test_special_addresses_refused_even_when_private_allowed(url: str, server: Server, tmp_path: Path) -> None:
    with pytest.raises(UrlRefused):
        download(url.format(port=server.port), tmp_path / "a.bin", True)
    assert server.requests == []


def test_loopback_refused_without_allow_private(server: Server, tmp_path: Path) -> None:
    with pytest.raises(UrlRefused) as info:
        download(server.url("/x"), tmp_path / "a.bin", False)
    assert info.value.reason == f"127.0.0.1 {PRIVATE}"
    assert "DATASTORE_HTTP_ALLOW_PRIVATE" in str(info.value)
    assert server.requests == []


def test_localhost_name_resolving_to_loopback_refused(server: Server, tmp_path: Path) -> None:
    with pytest.raises(UrlRefused) as info:
        download(server.url("/data.bin", host="localhost"), tmp_path / "a.bin", False)
    assert info.value.reason.startswith("localhost resolves to a refused address: ")
    assert "DATASTORE_HTTP_ALLOW_PRIVATE=1" in info.value.reason
    assert server.requests == []


def test_localhost_allowed_with_allow_private(server: Server, tmp_path: Path, sleeps: Sleeps) -> None:
    got = download(server.url("/data.bin", host="localhost"), tmp_path / "a.bin", True, sleep=sleeps)
    assert got.sha256 == SHA


@pytest.mark.parametrize("target", ["http://169.254.169.254/latest/meta-data/", "http://[::ffff:169.254.169.254]/"])
def test_redirect_to_metadata_refused_on_the_hop(server: Server, tmp_path: Path, target: str) -> None:
    server.configure("/go", redirect=target)
    with pytest.raises(UrlRefused) as info:
        download(server.url("/go"), tmp_path / "a.bin", True)
    assert info.value.url == target
    assert "link-local/cloud metadata address" in info.value.reason
    assert len(server.requests) == 1


def test_redirect_to_private_refused_without_allow_private(server: Server, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    real = http_fetch.check_address
    # Pretend the test server's address is public, so only the hop into the LAN is at stake.
    monkeypatch.setattr(http_fetch, "check_address",
                        lambda ip, allow: None if str(ip) == "127.0.0.1" else real(ip, allow))
    server.configure("/go", redirect="http://10.1.2.3/internal.zip")
    with pytest.raises(UrlRefused) as info:
        download(server.url("/go"), tmp_path / "a.bin", False)
    assert info.value.url == "http://10.1.2.3/internal.zip"
    assert info.value.reason == f"10.1.2.3 {PRIVATE}"
    assert len(server.requests) == 1


def test_redirect_to_file_url_refused(server: Server, tmp_path: Path) -> None:
    server.configure("/go", redirect="file:///etc/passwd")
    with pytest.raises(UrlRefused, match="only http:// and https:// URLs can be fetched"):
        download(server.url("/go"), tmp_path / "a.bin", True)


def test_invalid_url_refused_not_retried(tmp_path: Path, sleeps: Sleeps) -> None:
    with pytest.raises(UrlRefused, match="the URL is not valid"):
        download("http://exa mple.com/a.zip", tmp_path / "a.bin", True, sleep=sleeps)
    assert sleeps == []


def test_redirect_with_credentials_refused_without_leaking(server: Server, tmp_path: Path) -> None:
    server.configure("/go", redirect="http://bob:hunter2secret@example.com/a.zip")
    with pytest.raises(UrlRefused) as info:
        download(server.url("/go"), tmp_path / "a.bin", True)
    assert "hunter2secret" not in str(info.value) and "bob" not in str(info.value)
    assert "credentials in the URL are not supported" in info.value.reason


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://x/y.zip", "gopher://x/", "s3://bucket/key", "x.zip"])
def test_other_schemes_refused(url: str, tmp_path: Path) -> None:
    with pytest.raises(UrlRefused) as info:
        download(url, tmp_path / "a.bin", True)
    assert info.value.reason == "only http:// and https:// URLs can be fetched"


def test_credentials_in_url_refused_and_not_shown(server: Server, tmp_path: Path) -> None:
    url = f"http://user:pw@127.0.0.1:{server.port}/data.bin"
    with pytest.raises(UrlRefused) as info:
        download(url, tmp_path / "a.bin", True)
    assert "pw" not in str(info.value)
    assert info.value.url == f"http://127.0.0.1:{server.port}/data.bin"
    assert info.value.reason == "credentials in the URL are not supported (unauthenticated URLs only)"
    assert server.requests == []


@pytest.mark.parametrize("url", ["http:///path", "http://:80/x", "http://host:99999/x"])
def test_url_without_usable_host_refused(url: str) -> None:
    with pytest.raises(UrlRefused):
        check_url(url)


@pytest.mark.parametrize(("url", "shown"), [
    ("https://u:p@host.example:8443/a.zip?x=1#frag", "https://host.example:8443/a.zip?x=1"),
    ("http://token@host/a", "http://host/a"),
    ("http://host/a?sig=abc", "http://host/a?sig=abc"),
    ("http://u:p@[::1/", "http://[::1/"),
])
def test_redact(url: str, shown: str) -> None:
    assert redact(url) == shown


PRIVATE = "is a private/loopback address; set DATASTORE_HTTP_ALLOW_PRIVATE=1 to allow it"
LINK = "a link-local/cloud metadata address"


@pytest.mark.parametrize(("address", "strict", "relaxed"), [
    ("8.8.8.8", None, None),
    ("2606:4700::1111", None, None),
    ("::ffff:8.8.8.8", None, None),
    ("2002:808:808::1", None, None),
    ("169.254.169.254", f"{{ip}} is {LINK}", "same"),
    ("169.254.1.1", f"{{ip}} is {LINK}", "same"),
    ("fe80::1", f"{{ip}} is {LINK}", "same"),
    ("fd00:ec2::254", f"{{ip}} is {LINK}", "same"),
    ("100.100.100.200", f"{{ip}} is {LINK}", "same"),
    ("::ffff:169.254.169.254", f"{{ip}} embeds 169.254.169.254, {LINK}", "same"),
    ("::a9fe:a9fe", f"{{ip}} embeds 169.254.169.254, {LINK}", "same"),
    ("2002:a9fe:a9fe::", f"{{ip}} embeds 169.254.169.254, {LINK}", "same"),
    ("64:ff9b::a9fe:a9fe", f"{{ip}} embeds 169.254.169.254, {LINK}", "same"),
    ("::ffff:0.0.0.0", "{ip} embeds 0.0.0.0, an unspecified address", "same"),
    ("0.0.0.0", "{ip} is an unspecified address", "same"),
    ("0.1.2.3", "{ip} is an unspecified address", "same"),
    ("::", "{ip} is an unspecified address", "same"),
    ("224.0.0.1", "{ip} is a multicast address", "same"),
    ("ff02::1", "{ip} is a multicast address", "same"),
    ("240.0.0.1", "{ip} is a reserved address", "same"),
    ("255.255.255.255", "{ip} is a reserved address", "same"),
    ("127.0.0.1", f"{{ip}} {PRIVATE}", None),
    ("127.9.9.9", f"{{ip}} {PRIVATE}", None),
    ("::1", f"{{ip}} {PRIVATE}", None),
    ("10.0.0.1", f"{{ip}} {PRIVATE}", None),
    ("172.16.0.1", f"{{ip}} {PRIVATE}", None),
    ("172.31.255.255", f"{{ip}} {PRIVATE}", None),
    ("192.168.1.1", f"{{ip}} {PRIVATE}", None),
    ("100.64.0.1", f"{{ip}} {PRIVATE}", None),
    ("fc00::1", f"{{ip}} {PRIVATE}", None),
    ("fd12:3456::1", f"{{ip}} {PRIVATE}", None),
    ("::ffff:127.0.0.1", "{ip} embeds 127.0.0.1, a private/loopback address; set DATASTORE_HTTP_ALLOW_PRIVATE=1 to allow it",
     None),
    ("::ffff:10.0.0.1", "{ip} embeds 10.0.0.1, a private/loopback address; set DATASTORE_HTTP_ALLOW_PRIVATE=1 to allow it",
     None),
    ("172.32.0.1", None, None),
])
def test_check_address_table(address: str, strict: str | None, relaxed: str | None) -> None:
    ip = ipaddress.ip_address(address)
    strict = strict.format(ip=ip) if strict else None  # str(ip) of mapped forms differs across Pythons
    assert check_address(ip, allow_private=False) == strict
    assert check_address(ip, allow_private=True) == (strict if relaxed == "same" else relaxed)


def test_resolve_checked_checks_every_address(monkeypatch: pytest.MonkeyPatch) -> None:
    def two(host, port, *args, **kw):  # type: ignore[no-untyped-def]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", port)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", port))]

    monkeypatch.setattr(socket, "getaddrinfo", two)
    with pytest.raises(UrlRefused, match="mixed.test resolves to a refused address: 169.254.169.254"):
        resolve_checked("mixed.test", 80, True)


def test_resolve_checked_returns_checked_addresses() -> None:
    assert resolve_checked("127.0.0.1", 80, True) == ["127.0.0.1"]


def test_unresolvable_host_fails_cleanly(tmp_path: Path) -> None:
    with pytest.raises(DownloadFailed, match="cannot resolve host 'no-such-host.invalid'"):
        download("http://no-such-host.invalid/a.zip", tmp_path / "a.bin", True)
