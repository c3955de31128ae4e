"""The models directory: what is installed, and installing more.

Two kinds of model live there: speech models (Vosk, for the transcriber) and
sentence encoders (for the detector's semantic stage, :mod:`models.encoder`);
what makes a folder one or the other, and which are installed as Python
packages, is :mod:`models.layout`.
A model is installed from a catalogue name, an http(s) or file URL, a local
zip, or a local directory. Whatever the source, installing is atomic: the
download and the unpacked files live in a hidden staging folder inside the
models directory until the model is verified (checksum, layout of a Vosk model or an encoder), then one
``rename`` puts it in place. A failure at any step leaves nothing half
installed and removes the staging folder.

Beside each installed model, inside its folder, ``.callshield-model.json``
records where it came from and the SHA-256 of the archive it was unpacked
from (computed during install when the catalogue did not know it).

This is an offline-first tool: only ``install`` of a name or http(s) URL
touches the network, through :mod:`urllib`, and only when asked.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from models.catalogue import Catalogue, CatalogueEntry, load_catalogue
from models.errors import BadArchive, ChecksumMismatch, DownloadFailed, ModelExists, ModelNotFound, NotAModel
from models.layout import (
    MARKER,
    InstalledModel,
    check_model_dir,
    installed_name,
    model_kind,
    model_problems,
    pip_models,
    read_marker,
)
from models.progress import Progress, Silent

_CHUNK = 1 << 20  # bytes per read while downloading or hashing
_STAGING_PREFIX = ".partial-"


@dataclass(frozen=True)
class InstallResult:
    """What ``install`` did.

    Attributes:
        name: the installed model's name (its folder name).
        path: where it now is.
        origin: what it was installed from.
        sha256: hex SHA-256 of the archive (None for a directory install).
        verified: which checksum was checked against a known value:
            ``sha256``, ``md5`` or ``none`` (then ``sha256`` is what we computed).
        already: the same model (same origin) was installed already; nothing
            was downloaded or changed (installing is idempotent).
    """

    name: str
    path: Path
    origin: str
    sha256: str | None
    verified: str
    already: bool = False


# --------------------------------------------------------------------------- the store


@dataclass(frozen=True)
class _Plan:
    kind: str  # "url", "zip" or "dir"
    where: str  # URL or local path
    name: str | None  # install name if already known
    entry: CatalogueEntry | None


class ModelStore:
    """One models directory (``root``): lists and installs models in it."""

    def __init__(self, root: Path, catalogue: Catalogue | None = None, *, timeout_s: float = 30.0) -> None:
        self.root = Path(root)
        self.catalogue = catalogue if catalogue is not None else load_catalogue()
        self.timeout_s = timeout_s

    # ---- reading

    def installed(self) -> list[InstalledModel]:
        """Models in the models directory, by name (hidden and broken folders left out)."""
        if not self.root.is_dir():
            return []
        found = []
        for path in sorted(self.root.iterdir()):
            kind = None if path.name.startswith(".") else model_kind(path)
            if kind is None:
                continue
            marker = read_marker(path)
            found.append(InstalledModel(name=path.name, path=path, source="models directory",
                                        sha256=marker.get("sha256"), origin=marker.get("origin"), kind=kind))
        return found

    def get(self, name: str) -> InstalledModel | None:
        """The installed model called ``name`` (models directory first, then pip packages)."""
        for model in self.installed() + pip_models():
            if model.name == name:
                return model
        return None

    # ---- installing

    def install(self, source: str, *, name: str | None = None, sha256: str | None = None, force: bool = False,
                progress: Progress | None = None) -> InstallResult:
        """Install a model from a catalogue name, URL, zip or directory (atomically).

        ``sha256`` (hex) overrides the catalogue's checksum. Raises
        :class:`ModelExists` unless ``force`` when the name is taken.
        """
        progress = progress or Silent()
        plan = self._plan(source)
        expected_sha256 = (sha256 or (plan.entry.sha256 if plan.entry else None) or "").lower() or None
        expected_md5 = None if sha256 else (plan.entry.md5 if plan.entry else None)
        target_name = name or plan.name
        if target_name and not force and (self.root / target_name).is_dir():
            marker = read_marker(self.root / target_name)
            if marker.get("origin") == plan.where and model_kind(self.root / target_name) is not None:
                return InstallResult(name=target_name, path=self.root / target_name, origin=plan.where,
                                     sha256=marker.get("sha256"), verified=marker.get("verified", "none"), already=True)
        if target_name:
            self._check_free(target_name, force)
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=self.root))
        try:
            unpacked = staging / "unpacked"
            unpacked.mkdir()
            digest: str | None = None
            verified = "none"
            if plan.kind == "dir":
                model_dir = _copy_model_dir(Path(plan.where), unpacked / (target_name or Path(plan.where).name), progress)
            else:
                if plan.kind == "url":
                    archive = staging / "download.zip"
                    hashes = self._download(plan.where, archive, progress, plan.entry)
                else:
                    archive = Path(plan.where)
                    hashes = _hash_file(archive, progress)
                digest = hashes["sha256"]
                verified = _verify(plan.where, hashes, expected_sha256, expected_md5)
                model_dir = _unpack(archive, unpacked, progress)
            final_name = target_name or _folder_name(model_dir, unpacked, plan.where)
            if final_name.startswith(".") or "/" in final_name or final_name in ("", ".."):
                raise NotAModel(f"cannot install a model named {final_name!r}")
            self._check_free(final_name, force)
            (model_dir / MARKER).write_text(json.dumps(
                {"name": final_name, "origin": plan.where, "sha256": digest, "verified": verified}, indent=2) + "\n",
                encoding="utf-8")
            target = self.root / final_name
            if target.exists():  # only with force: swap the old one out, then drop it
                target.rename(staging / "replaced")
            model_dir.rename(target)
            return InstallResult(name=final_name, path=target, origin=plan.where, sha256=digest, verified=verified)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _check_free(self, name: str, force: bool) -> None:
        if (self.root / name).exists() and not force:
            raise ModelExists(f"model {name!r} is already installed in {self.root} (use --force to replace it)")

    def _plan(self, source: str) -> _Plan:
        if source.startswith(("http://", "https://")):
            entry = self.catalogue.by_url(source)
            return _Plan("url", source, entry.name if entry else None, entry)
        if source.startswith("file://"):
            return self._plan_local(_file_url_path(source), self.catalogue.by_url(source))
        entry = self.catalogue.get(source)
        if entry is not None and not Path(source).exists():
            if entry.url.startswith("file://"):
                local = self._plan_local(_file_url_path(entry.url), entry)
                return _Plan(local.kind, local.where, entry.name, entry)
            return _Plan("url", entry.url, entry.name, entry)
        for model in pip_models():
            if model.name == source and not Path(source).exists():
                return _Plan("dir", str(model.path), model.name, None)
        return self._plan_local(Path(source).expanduser(), None)

    def _plan_local(self, path: Path, entry: CatalogueEntry | None) -> _Plan:
        if path.is_dir():
            name = entry.name if entry else None
            if name is None and path.name == "model":  # a pip package's PKG/model, or any PKG/model folder
                name = installed_name(path)
            return _Plan("dir", str(path), name, entry)
        if path.is_file():
            # An official zip fetched on another machine is checked against the catalogue by its file name.
            entry = entry or self.catalogue.get(_stem(str(path))) or self.catalogue.by_file_name(path.name)
            return _Plan("zip", str(path), entry.name if entry else None, entry)
        raise ModelNotFound(
            f"{path}: no such model, zip or directory (known names: 'callshield models list')")

    def _download(self, url: str, dest: Path, progress: Progress, entry: CatalogueEntry | None) -> dict[str, str]:
        digests = _Digests()
        done = 0
        request = urllib.request.Request(url, headers={"User-Agent": "callshield-models"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response, dest.open("wb") as out:
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else (entry.size_bytes if entry else None)
                progress.start(f"downloading {_stem(url)}", total)
                while True:
                    block = response.read(_CHUNK)
                    if not block:
                        break
                    out.write(block)
                    digests.update(block)
                    done += len(block)
                    progress.advance(done)
                progress.finish()
        except urllib.error.HTTPError as exc:
            raise DownloadFailed(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from exc
        except http.client.IncompleteRead as exc:
            done += len(exc.partial)
            raise DownloadFailed(f"download of {url} was cut short after {done} bytes; nothing installed, try again") from exc
        except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise DownloadFailed(f"download of {url} failed: {reason}; nothing installed (no internet on this machine? "
                                 f"fetch the zip elsewhere and run 'callshield models install FILE.zip')") from exc
        if length and length.isdigit() and done != int(length):
            raise DownloadFailed(f"download of {url} was cut short: got {done} of {length} bytes; nothing installed, try again")
        return digests.hexdigests()


# --------------------------------------------------------------------------- helpers


def _folder_name(model_dir: Path, unpacked: Path, where: str) -> str:
    """The install name of an unpacked model with no name given: its folder's
    (a wheel's ``PKG/model`` is named for the package)."""
    if model_dir == unpacked:
        return _stem(where)
    return model_dir.name if model_dir.parent == unpacked else installed_name(model_dir)


def _stem(where: str) -> str:
    name = urllib.parse.urlparse(where).path.rstrip("/").rsplit("/", 1)[-1] if "://" in where else Path(where).name
    return name[:-4] if name.lower().endswith(".zip") else name


def _file_url_path(url: str) -> Path:
    """The local path a ``file://`` URL names."""
    return Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))


class _Digests:
    """SHA-256 and MD5 of an archive, fed block by block (MD5: what upstream publishes)."""

    def __init__(self) -> None:
        self.sha256, self.md5 = hashlib.sha256(), hashlib.md5()

    def update(self, block: bytes) -> None:
        self.sha256.update(block)
        self.md5.update(block)

    def hexdigests(self) -> dict[str, str]:
        return {"sha256": self.sha256.hexdigest(), "md5": self.md5.hexdigest()}


def _hash_file(path: Path, progress: Progress) -> dict[str, str]:
    digests = _Digests()
    total = path.stat().st_size
    done = 0
    progress.start(f"checking {path.name}", total)
    with path.open("rb") as fh:
        while block := fh.read(_CHUNK):
            digests.update(block)
            done += len(block)
            progress.advance(done)
    progress.finish()
    return digests.hexdigests()


def _verify(where: str, hashes: dict[str, str], sha256: str | None, md5: str | None) -> str:
    if sha256:
        if hashes["sha256"] != sha256:
            raise ChecksumMismatch(f"checksum mismatch for {where}: expected sha256 {sha256}, got {hashes['sha256']}; nothing installed")
        return "sha256"
    if md5:
        if hashes["md5"] != md5:
            raise ChecksumMismatch(f"checksum mismatch for {where}: expected md5 {md5}, got {hashes['md5']}; nothing installed")
        return "md5"
    return "none"


def _unpack(archive: Path, dest: Path, progress: Progress) -> Path:
    """Extract ``archive`` into ``dest`` (refusing paths that leave it); return the model folder inside."""
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            total = sum(m.file_size for m in members)
            progress.start(f"unpacking {archive.name}", total)
            done = 0
            root = dest.resolve()
            for member in members:
                target = (dest / member.filename).resolve()
                if member.filename.startswith("/") or (target != root and root not in target.parents):
                    raise BadArchive(f"{archive}: entry {member.filename!r} would be written outside the model folder")
                zf.extract(member, dest)
                done += member.file_size
                progress.advance(done)
            progress.finish()
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise BadArchive(f"{archive.name} is not a readable zip archive ({exc}); nothing installed") from exc
    return _find_model(dest, archive.name)


def _find_model(dest: Path, label: str) -> Path:
    """The folder inside an unpacked archive that holds the model (itself or one
    level or two down: a Vosk zip has one folder, a wheel ``PKG/model``)."""
    candidates = [dest] + sorted(p for p in dest.iterdir() if p.is_dir())
    candidates += sorted(q for p in candidates[1:] for q in p.iterdir() if q.is_dir())
    for path in candidates:
        if model_kind(path) is not None:
            return path
    subdirs = [p for p in dest.iterdir() if p.is_dir()]
    best = subdirs[0] if len(subdirs) == 1 else dest
    raise NotAModel(f"{label} does not hold a Vosk model ({'; '.join(model_problems(best))}) "
                    f"nor a sentence encoder; nothing installed")


def _copy_model_dir(src: Path, dest: Path, progress: Progress) -> Path:
    if model_kind(src) is None:
        check_model_dir(src)  # says what a Vosk model would lack
    files = [p for p in src.rglob("*") if p.is_file()]
    total = sum(p.stat().st_size for p in files)
    done = 0
    progress.start(f"copying {dest.name}", total)

    def copy(s: str, d: str) -> str:
        nonlocal done
        result = shutil.copy2(s, d)
        done += os.path.getsize(d)
        progress.advance(done)
        return result

    shutil.copytree(src, dest, copy_function=copy, ignore=shutil.ignore_patterns(MARKER, "__pycache__"))
    progress.finish()
    return dest
