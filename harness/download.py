"""Download an official BEIR dataset: stream, verify, unzip. Standard library only (urllib, zipfile).

The one download path of the harness (``harness run`` on a missing name, ``harness data get``):

* ``<base>/<name>.zip`` is streamed into a temporary file beside the data folder, with a progress
  bar (bytes and rate); ``<base>`` is BEIR's server, or ``$HARNESS_BEIR_URL`` (a mirror; tests
  point it at a loopback server);
* the archive's md5 must equal the one BEIR publishes for that name (:data:`BEIR_MD5`, from the
  table in BEIR's README); a mismatch, a broken-off transfer or any other failure deletes the
  temporary file, so a partial download is never reused: a rerun downloads again;
* members are checked before anything is extracted (no absolute paths, no ``..``: zip-slip), the
  archive is unpacked into a staging folder and its dataset folder renamed into place, so a
  dataset folder either is complete or does not exist.

Names outside BEIR's table can come from a mirror only with their md5 listed in
``$HARNESS_BEIR_MD5`` (a file in ``md5sum`` format: ``<md5>  <name>.zip`` a line); the md5 of an
official name always comes from the table, whatever the mirror says.

Every failure is one :class:`HarnessError` line: ``could not reach <host>: <reason>``,
``not a BEIR dataset: <name>; known: ...``, a checksum line naming both hashes, or the path and
the operating system's message for disk and permission errors.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from http.client import HTTPException
from pathlib import Path, PurePosixPath

from harness.errors import HarnessError

DEFAULT_BASE_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets"

#: md5 of each official archive, as published in the "Available Datasets" table of BEIR's README
#: (github.com/beir-cellar/beir). BioASQ, Signal-1M, TREC-NEWS and Robust04 are not downloadable.
BEIR_MD5: dict[str, str] = {
    "msmarco": "444067daf65d982533ea17ebd59501e4",
    "trec-covid": "ce62140cb23feb9becf6270d0d1fe6d1",
    "nfcorpus": "a89dba18a62ef92f7d323ec890a0d38d",
    "nq": "d4d3d2e48787a744b6f6e691ff534307",
    "hotpotqa": "f412724f78b0d91183a0e86805e16114",
    "fiqa": "17918ed23cd04fb15047f73e6c3bd9d9",
    "arguana": "8ad3e3c2a5867cdced806d6503f29b99",
    "webis-touche2020": "46f650ba5a527fc69e0a6521c5a23563",
    "cqadupstack": "4e41456d7df8ee7760a7f866133bda78",
    "quora": "18fb154900ba42a600f84b839c173167",
    "dbpedia-entity": "c2a39eb420a3164af735795df012ac2c",
    "scidocs": "38121350fc3a4d2f48850f6aff52e4a9",
    "fever": "5a818580227bfb4b35bb6fa46d9b6c03",
    "climate-fever": "8b66f0a9126c521bae2bde127b4dc99d",
    "scifact": "5f7d1de60b170fc8027bb7898e2efca1",
}

CHUNK_BYTES = 1 << 20
TIMEOUT_SECONDS = 60


def base_url() -> str:
    return os.environ.get("HARNESS_BEIR_URL", "").strip().rstrip("/") or DEFAULT_BASE_URL


def _extra_checksums() -> dict[str, str]:
    """``$HARNESS_BEIR_MD5``: ``<md5>  <name>.zip`` lines for names outside BEIR's table."""
    path = os.environ.get("HARNESS_BEIR_MD5")
    if not path:
        return {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise HarnessError(f"{path}: cannot read $HARNESS_BEIR_MD5 ({exc.strerror or exc})") from None
    table = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or len(parts[0]) != 32 or not parts[1].endswith(".zip"):
            raise HarnessError(f"{path}:{number}: expected '<md5>  <name>.zip', got {line[:60]!r}")
        table[parts[1].lstrip("*").removesuffix(".zip")] = parts[0].lower()
    return table


def expected_md5(name: str) -> str:
    """The md5 the archive of ``name`` must have; an error naming the known datasets otherwise."""
    if name in BEIR_MD5:
        return BEIR_MD5[name]
    extra = _extra_checksums()
    if name in extra:
        return extra[name]
    raise HarnessError(f"not a BEIR dataset: {name}; known: {', '.join(sorted(BEIR_MD5) + sorted(extra))}")


def download_dataset(name: str, data_dir: Path) -> Path:
    """Fetch, verify and unpack ``name`` into ``data_dir/name``; returns that folder."""
    md5 = expected_md5(name)
    url = f"{base_url()}/{urllib.parse.quote(name)}.zip"
    data_dir = Path(data_dir)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile(dir=data_dir, prefix=f".{name}.", suffix=".zip.part", delete=False)
    except OSError as exc:
        raise _disk_error(data_dir, exc) from None
    archive = Path(handle.name)
    try:
        with handle:
            got = _stream(url, handle, name)
        if got != md5:
            raise HarnessError(
                f"{url}: md5 {got} does not match the published {md5}; the download was deleted, rerun to try again"
            )
        return _unzip(archive, data_dir, name, url)
    finally:
        archive.unlink(missing_ok=True)


def fetch_file(url: str, target: Path, sha256: str, how_to_place: str) -> Path:
    """``target`` if it exists with this sha256, else ``url`` streamed into it and verified (a
    mismatch or failure leaves no file); ``how_to_place`` ends an unreachable-host error line."""
    target = Path(target)
    if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == sha256:
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", suffix=".part",
                                             delete=False)
    except OSError as exc:
        raise _disk_error(target.parent, exc) from None
    part = Path(handle.name)
    try:
        with handle:
            try:
                got = _stream(url, handle, target.name, hashlib.sha256())
            except HarnessError as exc:
                raise HarnessError(f"{exc}; {how_to_place}") from None
        if got != sha256:
            raise HarnessError(f"{url}: sha256 {got} does not match the pinned {sha256}; the download was deleted")
        os.replace(part, target)
        return target
    finally:
        part.unlink(missing_ok=True)


def _stream(url: str, out, name: str, digest=None) -> str:
    """Copy the response body into ``out`` with a progress bar; returns its hex digest (md5 unless
    another ``hashlib`` object is given)."""
    from tqdm.auto import tqdm

    host = urllib.parse.urlsplit(url).netloc or url
    digest = digest or hashlib.md5()
    received = 0
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with tqdm(total=total, desc=f"download {name}", unit="B", unit_scale=True, unit_divisor=1024) as bar:
                while chunk := response.read(CHUNK_BYTES):
                    digest.update(chunk)
                    try:
                        out.write(chunk)
                    except OSError as exc:
                        raise _disk_error(Path(out.name), exc) from None
                    received += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as exc:
        raise HarnessError(f"{url}: the server answered HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise HarnessError(f"could not reach {host}: {_reason(exc.reason)}") from None
    except (HTTPException, TimeoutError, ConnectionError) as exc:
        raise HarnessError(
            f"{url}: the transfer broke off after {received:,} bytes ({_reason(exc)}); the partial download"
            " was deleted, rerun to download again"
        ) from None
    if total is not None and received != total:
        raise HarnessError(
            f"{url}: the transfer broke off after {received:,} of {total:,} bytes; the partial download was"
            " deleted, rerun to download again"
        )
    return digest.hexdigest()


def _reason(reason) -> str:
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or reason.__class__.__name__.lower()


def _disk_error(path: Path, exc: OSError) -> HarnessError:
    return HarnessError(f"{path}: cannot write the download ({exc.strerror or exc})")


def _member_is_safe(member: str) -> bool:
    path = PurePosixPath(member.replace("\\", "/"))
    return bool(member) and not path.is_absolute() and ".." not in path.parts and ":" not in path.parts[0]


def _unzip(archive: Path, data_dir: Path, name: str, url: str) -> Path:
    """Unpack ``archive`` (zip-slip checked first) and move its ``name/`` folder into ``data_dir``."""
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise HarnessError(f"{url}: not a zip archive ({exc})") from None
    with zf:
        members = zf.namelist()
        for member in members:
            if not _member_is_safe(member):
                raise HarnessError(
                    f"{url}: archive member {member!r} would be written outside {data_dir}; refused (zip-slip)"
                )
        if not any(PurePosixPath(m).parts[0] == name for m in members):
            raise HarnessError(f"{url}: the archive holds no '{name}/' folder")
        target = data_dir / name
        try:
            staging = Path(tempfile.mkdtemp(dir=data_dir, prefix=f".{name}.unzip-"))
        except OSError as exc:
            raise _disk_error(data_dir, exc) from None
        try:
            zf.extractall(staging)
            if target.exists():
                raise HarnessError(f"{target}: already exists; remove it to download again")
            os.replace(staging / name, target)
        except OSError as exc:
            raise _disk_error(target, exc) from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target
