"""Tools the tests use besides the servers: kcat, Debian's Chromium, and axe-core from npm.

Nothing here is vendored: Chromium comes from Debian's packages (driven by Playwright with
`executable_path`, never `playwright install`, which downloads a browser build of its own), and axe-core
is one exact, integrity-checked release from the npm registry, cached under the cache folder.
"""

import base64
import hashlib
import io
import json
import subprocess
import tarfile
import tempfile
from pathlib import Path

from ops.processes import ServiceError
from ops.servers import ensure_command

# axe-core, the accessibility engine the desk's browser tests run. The integrity is npm's own sha512 of
# the release tarball (`npm view axe-core@VERSION dist.integrity`): a different tarball is refused.
AXE_CORE_VERSION = "4.14.1"
AXE_CORE_INTEGRITY = (
    "sha512-FHfa+lmNjQZfJz1q8wKqIDwC6DExcHt/pkjNQb09a3NPjCKg2rhu5qb2S4r76ASyFNNtuFooJpZe37OgudVGtQ=="
)


def ensure_chromium() -> str:
    """The path of Debian's Chromium, installed with apt-get when missing."""
    return ensure_command("chromium", "chromium")


def axe_core_path(cache_dir: Path) -> Path:
    """Where `ensure_axe_core` keeps axe.min.js (the file may not exist yet)."""
    return cache_dir / "axe-core" / AXE_CORE_VERSION / "axe.min.js"


def ensure_axe_core(cache_dir: Path) -> Path:
    """axe.min.js of the pinned axe-core release, fetched once with npm and cached."""
    target = axe_core_path(cache_dir)
    if target.is_file():
        return target
    npm = ensure_command("npm", "npm")
    with tempfile.TemporaryDirectory() as scratch:
        result = subprocess.run(
            [npm, "pack", f"axe-core@{AXE_CORE_VERSION}", "--json", "--pack-destination", scratch],
            capture_output=True,
            text=True,
            check=False,
            cwd=scratch,
            stdin=subprocess.DEVNULL,
        )
        if result.returncode != 0:
            raise ServiceError(
                f"could not fetch axe-core {AXE_CORE_VERSION} with npm:\n{result.stderr[-2000:]}"
            )
        tarball = Path(scratch) / json.loads(result.stdout)[0]["filename"]
        content = tarball.read_bytes()
    digest = "sha512-" + base64.b64encode(hashlib.sha512(content).digest()).decode()
    if digest != AXE_CORE_INTEGRITY:
        raise ServiceError(f"axe-core {AXE_CORE_VERSION} from npm does not match its pinned integrity")
    with tarfile.open(fileobj=io.BytesIO(content), mode="r:gz") as archive:
        member = archive.extractfile("package/axe.min.js")
        if member is None:
            raise ServiceError(f"axe-core {AXE_CORE_VERSION} has no axe.min.js")
        script = member.read()
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    partial.write_bytes(script)
    partial.replace(target)
    return target
