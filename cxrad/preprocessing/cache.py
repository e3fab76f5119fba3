"""On-disk cache of preprocessed films, so repeated runs and sweeps skip decoding full-size PNGs and DICOMs.

Layout: ``<cache_dir>/<config hash>/<key[:2]>/<key>.npz``. The config hash covers every pixel-affecting
:class:`~cxrad.preprocessing.PreprocessConfig` field, :data:`CACHE_FORMAT` and the OpenCV/albumentations
versions, so a config change reads another folder. The entry key hashes the film's real path, size and
``mtime_ns``, so a rewritten or touched file gets a new key and a stale entry is never read (it is only left
behind; delete the folder to reclaim space). Entries hold the single-channel uint8 film after resize, crop and
CLAHE (and the ROI step when ``roi`` is set: then the thorax mask is stored too), plus the decoded film's shape,
which the lesion mask is drawn at.

Entries are written to a temporary file and renamed into place (``os.replace`` is atomic on one filesystem),
so parallel sweep jobs and DataLoader workers see a whole entry or none.

Example:
    >>> import tempfile
    >>> from cxrad.preprocessing import PreprocessConfig
    >>> cache = PreprocessCache(tempfile.mkdtemp(), PreprocessConfig(image_size=64))
    >>> key = cache.key(__file__)
    >>> cache.get(key) is None
    True
    >>> cache.put(key, CachedFilm(np.zeros((64, 64), np.uint8), (512, 512)))
    >>> cache.get(key).source_shape
    (512, 512)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import BinaryIO, NamedTuple

import albumentations as A
import cv2
import numpy as np

from cxrad.preprocessing.transforms import PreprocessConfig

log = logging.getLogger(__name__)

# Bump whenever decoding or the transform changes what a given config produces: old entries then go unread.
CACHE_FORMAT = 1
# Settings that say where and whether to cache, not what the pixels are: they must not split the cache.
_NOT_PIXELS = ("cache", "cache_dir")


class CachedFilm(NamedTuple):
    """A preprocessed film: ``image`` (H, W) uint8 before the 3-channel step, the decoded film's shape and, with
    ``preprocessing.roi``, the thorax mask (H, W) bool."""

    image: np.ndarray
    source_shape: tuple[int, int]
    roi_mask: np.ndarray | None = None


def config_hash(config: PreprocessConfig) -> str:
    """Name of the cache folder for ``config``: equal exactly when the cached pixels would be equal.

    Example:
        >>> config_hash(PreprocessConfig(cache=True, cache_dir="/a")) == config_hash(PreprocessConfig())
        True
        >>> config_hash(PreprocessConfig(clip_limit=3.0)) == config_hash(PreprocessConfig())
        False
    """
    return _digest(json.dumps(_identity(config), sort_keys=True))


class PreprocessCache:
    """Preprocessed films of one :class:`~cxrad.preprocessing.PreprocessConfig` below ``root``.

    Args:
        root: the cache folder (``preprocessing.cache_dir``); created if missing.
        config: the preprocessing settings whose output is stored.

    Raises:
        OSError: when the folder cannot be created, naming it and the fix.
    """

    def __init__(self, root: str | Path, config: PreprocessConfig) -> None:
        self.directory = Path(root).expanduser().resolve() / config_hash(config)  # immune to a later chdir
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            msg = (
                f"cannot create the preprocessing cache {self.directory} ({error}); set "
                "preprocessing.cache_dir (or CXRAD_CACHE_DIR) to a writable folder, or preprocessing.cache=false"
            )
            raise OSError(msg) from error
        manifest = self.directory / "config.json"
        if not manifest.exists():  # for people browsing the cache: which settings a hash stands for
            _write_atomically(manifest, lambda f: f.write(json.dumps(_identity(config), indent=2).encode()))

    def key(self, path: str | Path) -> str | None:
        """Entry key of the film at ``path`` as it is now; ``None`` when it cannot be stat'ed (decode reports it).

        Take the key before decoding: a file rewritten in between then lands under its old key, never read again.
        """
        try:
            stat = os.stat(path)
        except OSError:
            return None
        return _digest(f"{os.path.realpath(path)}\0{stat.st_size}\0{stat.st_mtime_ns}")

    def get(self, key: str) -> CachedFilm | None:
        """The entry stored under ``key``, or ``None`` when there is none (or it is unreadable)."""
        path = self._entry(key)
        try:
            with np.load(path, allow_pickle=False) as entry:
                roi_mask = entry["roi_mask"] if "roi_mask" in entry.files else None
                return CachedFilm(entry["image"], tuple(int(side) for side in entry["source_shape"]), roi_mask)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            # Only a crash of the machine can leave a broken entry (writes are atomic); rebuilding it is right.
            log.warning("preprocessing cache entry %s is unreadable (%s); preprocessing the film again", path, error)
            return None

    def put(self, key: str, film: CachedFilm) -> None:
        """Store ``film`` under ``key`` atomically; a concurrent writer of the same key writes the same bytes."""
        path = self._entry(key)
        path.parent.mkdir(exist_ok=True)
        shape = np.asarray(film.source_shape, dtype=np.int64)
        extra = {} if film.roi_mask is None else {"roi_mask": film.roi_mask.astype(bool)}
        _write_atomically(path, lambda f: np.savez(f, image=film.image, source_shape=shape, **extra))

    def _entry(self, key: str) -> Path:
        # 256 sub-folders keep directories small at NIH scale (112k films per config).
        return self.directory / key[:2] / f"{key}.npz"


def _identity(config: PreprocessConfig) -> dict[str, object]:
    settings = {name: value for name, value in asdict(config).items() if name not in _NOT_PIXELS}
    if settings.get("roi") == "none":  # films cached before the ROI option existed stay valid
        del settings["roi"]
    return {**settings, "format": CACHE_FORMAT, "opencv": cv2.__version__, "albumentations": A.__version__}


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write through ``write(file)`` to a temporary file beside ``path``, then rename it onto ``path``."""
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(handle, 0o644)  # mkstemp's 0600 would hide a shared cache from other users
        with os.fdopen(handle, "wb") as file:
            write(file)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
