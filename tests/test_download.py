"""Dataset downloads, for real, against an HTTP server on 127.0.0.1 (never the internet).

The server serves whatever bytes a test puts in ``server.files`` under ``/<name>.zip``; it
listens on loopback only, on a free port, and stops when the test ends (or after 60 s at most).
"""

from __future__ import annotations

import hashlib
import io
import socket
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import make_beir, run_cli
from harness.data import data_dirs, user_data_dir
from harness.download import BEIR_MD5

NAME = "tinybeir"


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        body = self.server.files.get(self.path.lstrip("/"))
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.server.truncate:  # promise the whole body, send half, hang up
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files, httpd.truncate = {}, False
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    watchdog = threading.Timer(60, httpd.shutdown)  # a hung test cannot keep the server alive
    watchdog.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield httpd
    finally:
        watchdog.cancel()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def beir_zip(tmp_path: Path, name: str = NAME, extra: dict[str, bytes] | None = None) -> bytes:
    """A zip holding ``name/`` in BEIR's layout (the tests' default tiny dataset), plus ``extra`` members."""
    folder = make_beir(tmp_path / "zip-src", name=name)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder.parent).as_posix())
        for member, data in (extra or {}).items():
            zf.writestr(member, data)
    return buffer.getvalue()


@pytest.fixture
def mirror(server, tmp_path, monkeypatch):
    """The server as the BEIR base URL, ``tinybeir.zip`` on it with its md5 listed in $HARNESS_BEIR_MD5."""
    body = beir_zip(tmp_path)
    server.files[f"{NAME}.zip"] = body
    sums = tmp_path / "md5sums"
    sums.write_text(f"{hashlib.md5(body).hexdigest()}  {NAME}.zip\n")
    monkeypatch.setenv("HARNESS_BEIR_URL", server.url)
    monkeypatch.setenv("HARNESS_BEIR_MD5", str(sums))
    return server


def one_error_line(code: int, err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1, err
    assert "Traceback" not in err and "Error]" not in lines[0] and "Error:" not in lines[0]
    return lines[0]


def test_run_downloads_verifies_unzips_and_scores(mirror, tmp_path, capsys):
    data = tmp_path / "data"
    code, out, err = run_cli(["run", "--model", "bm25", "--datasets", NAME, "--data-dir", str(data),
                              "--results-dir", str(tmp_path / "results"), "--cache-dir", str(tmp_path / "cache")],
                             capsys)
    assert code == 0, err
    assert f"download {NAME}" in err and "100%" in err and "B/s" in err  # the progress bar: bytes and rate
    assert sorted(p.name for p in data.iterdir()) == [NAME]  # no temporary file or staging folder left
    assert (data / NAME / "qrels" / "test.tsv").is_file()
    assert "ndcg@10=1.0000" in out and "queries=6" in out


def test_data_get_then_list(mirror, tmp_path, capsys):
    data = tmp_path / "data"
    code, out, err = run_cli(["data", "get", NAME, "--data-dir", str(data)], capsys)
    assert code == 0, err
    assert out.strip() == f"{NAME}: {data / NAME}"
    code, out, _ = run_cli(["data", "list", "--data-dir", str(data)], capsys)
    assert code == 0
    assert f"server: {mirror.url}" in out
    assert any(line.split()[:2] == [NAME, str(data / NAME)] for line in out.splitlines())
    assert any(line.split()[:3] == ["fiqa", "not", "local"] for line in out.splitlines())


def test_checksum_mismatch_names_both_hashes_and_keeps_nothing(server, tmp_path, capsys, monkeypatch):
    body = beir_zip(tmp_path, name="scifact")  # an official name, but not the official bytes
    server.files["scifact.zip"] = body
    monkeypatch.setenv("HARNESS_BEIR_URL", server.url)
    data = tmp_path / "data"
    code, _, err = run_cli(["data", "get", "scifact", "--data-dir", str(data)], capsys)
    line = one_error_line(code, err)
    assert hashlib.md5(body).hexdigest() in line and BEIR_MD5["scifact"] in line
    assert list(data.iterdir()) == []


def test_truncated_transfer_is_deleted_and_a_rerun_downloads_again(mirror, tmp_path, capsys):
    data = tmp_path / "data"
    mirror.truncate = True
    code, _, err = run_cli(["data", "get", NAME, "--data-dir", str(data)], capsys)
    line = one_error_line(code, err)
    assert "broke off" in line and "rerun" in line
    assert list(data.iterdir()) == []  # the partial file is gone: never reused
    mirror.truncate = False
    code, out, err = run_cli(["data", "get", NAME, "--data-dir", str(data)], capsys)
    assert code == 0, err
    assert (data / NAME / "corpus.jsonl.gz").is_file()


@pytest.mark.parametrize("member", ["../evil.txt", f"{NAME}/../../evil.txt", "/tmp/evil.txt"])
def test_zip_slip_member_is_refused_before_anything_is_written(server, tmp_path, capsys, monkeypatch, member):
    body = beir_zip(tmp_path, extra={member: b"gotcha"})
    server.files[f"{NAME}.zip"] = body
    sums = tmp_path / "md5sums"
    sums.write_text(f"{hashlib.md5(body).hexdigest()}  {NAME}.zip\n")
    monkeypatch.setenv("HARNESS_BEIR_URL", server.url)
    monkeypatch.setenv("HARNESS_BEIR_MD5", str(sums))
    data = tmp_path / "deep" / "data"
    code, _, err = run_cli(["data", "get", NAME, "--data-dir", str(data)], capsys)
    line = one_error_line(code, err)
    assert "zip-slip" in line and repr(member) in line
    assert list(data.iterdir()) == []
    assert not list(tmp_path.rglob("evil.txt"))


def test_server_unreachable(tmp_path, capsys, monkeypatch):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("HARNESS_BEIR_URL", f"http://127.0.0.1:{port}")
    code, _, err = run_cli(["data", "get", "scifact", "--data-dir", str(tmp_path / "data")], capsys)
    line = one_error_line(code, err)
    assert line.startswith(f"error: could not reach 127.0.0.1:{port}: ")
    assert "refused" in line.lower()


def test_http_error_and_unknown_name(mirror, tmp_path, capsys):
    code, _, err = run_cli(["data", "get", "scidocs", "--data-dir", str(tmp_path / "data")], capsys)
    assert "HTTP 404" in one_error_line(code, err)  # the mirror does not have it
    code, _, err = run_cli(["data", "get", "not-beir", "--data-dir", str(tmp_path / "data")], capsys)
    line = one_error_line(code, err)
    assert line.startswith("error: not a BEIR dataset: not-beir; known: arguana, ")
    assert NAME in line  # the mirror's extra checksums count as known


def test_unwritable_data_folder_names_the_path_and_the_os_error(mirror, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, _, err = run_cli(["data", "get", NAME, "--data-dir", str(blocker / "data")], capsys)
    line = one_error_line(code, err)
    assert str(blocker / "data") in line and ("Not a directory" in line or "File exists" in line)


def test_data_folder_resolution_order(tmp_path, monkeypatch):
    monkeypatch.delenv("HARNESS_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert user_data_dir() == tmp_path / "xdg" / "harness" / "datasets"
    assert data_dirs()[0] == tmp_path / "xdg" / "harness" / "datasets"  # then the sibling, where it exists
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path / "env"))
    assert data_dirs() == [tmp_path / "env"]
    assert data_dirs(tmp_path / "flag") == [tmp_path / "flag"]


def test_hub_model_failure_is_one_line_naming_the_id_and_reason(small_beir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = run_cli(["run", "--model", "nobody-here/no-such-model", "--datasets", str(small_beir),
                            "--results-dir", str(tmp_path / "results"), "--cache-dir", str(tmp_path / "cache")], capsys)
    line = one_error_line(code, err)
    assert line.startswith("error: cannot load hub model 'nobody-here/no-such-model': ")
    assert "HF_HUB_OFFLINE=0" in line


def test_cache_clear_keeps_downloaded_datasets(mirror, tmp_path, capsys, monkeypatch):
    # The default vector cache (~/.cache/harness) holds the default data folder (~/.cache/harness/datasets).
    monkeypatch.delenv("HARNESS_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    cache = tmp_path / "xdg" / "harness"
    assert run_cli(["data", "get", NAME], capsys)[0] == 0
    (cache / "ab").mkdir()
    (cache / "ab" / "entry.npz").write_bytes(b"0" * 2048)
    code, out, _ = run_cli(["cache", "clear", "--cache-dir", str(cache)], capsys)
    assert code == 0 and not (cache / "ab").exists()
    assert (cache / "datasets" / NAME / "qrels" / "test.tsv").is_file()


@pytest.mark.slow  # imports sentence-transformers in a subprocess and waits on huggingface_hub (minutes under load)
def test_hub_model_online_failure_goes_through_the_hub_and_is_one_line(small_beir, tmp_path):
    import subprocess
    import sys

    from conftest import REPO, harness_subprocess_env

    with socket.socket() as probe:  # the "hub": a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = harness_subprocess_env(tmp_path, HF_HUB_OFFLINE="0", HF_ENDPOINT=f"http://127.0.0.1:{port}",
                                 HF_HOME=str(tmp_path / "hf"), PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-m", "harness", "run", "--model", "nobody-here/no-such-model",
                           "--datasets", str(small_beir), "--no-save"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=900)
    lines = [line for line in done.stderr.splitlines() if line.strip() and "Loading" not in line]
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith("error: cannot load hub model 'nobody-here/no-such-model': ")
    assert f"127.0.0.1:{port}" in lines[0]  # it went to the hub endpoint (huggingface_hub), not a local folder
