'''An Ollama ``Modelfile`` beside an exported GGUF: ``ollama create NAME -f Modelfile`` then works.

Ollama formats conversations with its own Go-template ``TEMPLATE``, not with the Jinja chat template
inside the GGUF, so a model fine-tuned on one format must be given the same format again there, or
it answers a prompt shape it never saw. Translating arbitrary Jinja into Go templates is not
possible in general, so we keep a small table of conversation formats, each with a Python
rendering and its Go template, and *identify* the model's chat template by rendering probe
conversations with the tokenizer itself and comparing them with each format's rendering. A
template that matches none is refused with a clear message rather than given a wrong TEMPLATE.

A template that injects a default system prompt when the conversation has none (SmolLM2 does)
becomes Ollama's ``SYSTEM`` line, which Ollama uses in exactly that case; ``--system`` replaces it.
'''

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.errors import TuneforgeError
from tuneforge.export.permissions import ordinary_modes

MODELFILE = "Modelfile"
_HEADER = "# Ollama Modelfile written by tuneforge"


@dataclass(frozen=True)
class ChatFormat:
    """One conversation format: how a message renders, its Ollama TEMPLATE and stop strings."""

    name: str
    render_message: Callable[[str, str], str]
    generation_prompt: str
    go_template: str
    stop: tuple[str, ...]

    def render(self, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
        text = "".join(self.render_message(m["role"], m["content"]) for m in messages)
        return text + (self.generation_prompt if add_generation_prompt else "")


# Ollama's .Messages loop; $last marks the final message, after which the assistant turn opens.
_CHATML_TEMPLATE = """{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 -}}
<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ if and $last (ne .Role "assistant") }}<|im_start|>assistant
{{ end }}
{{- end }}"""

CHATML = ChatFormat(
    name="chatml",
    render_message=lambda role, content: f"<|im_start|>{role}\n{content}<|im_end|>\n",
    generation_prompt="<|im_start|>assistant\n",
    go_template=_CHATML_TEMPLATE,
    stop=("<|im_end|>",),
)
FORMATS = (CHATML,)

_PROBE = [
    {"role": "system", "content": "Probe system text."},
    {"role": "user", "content": "First probe question?"},
    {"role": "assistant", "content": "First probe answer."},
    {"role": "user", "content": "Second probe question?"},
]


@dataclass(frozen=True)
class Identified:
    """A tokenizer's chat template, identified: its format and the default system prompt it injects."""

    format: ChatFormat
    default_system: str | None


def identify_chat_format(tokenizer: Any) -> Identified:
    """Which :data:`FORMATS` entry the tokenizer's chat template renders exactly, checked on probes."""
    if not getattr(tokenizer, "chat_template", None):
        raise TuneforgeError(
            "the model has no chat template, so there is no conversation format to give Ollama",
            "export without --modelfile and write the Modelfile's TEMPLATE yourself",
        )

    def render(messages: list[dict[str, str]], gen: bool) -> str:
        return tokenizer.apply_chat_template(messages, add_generation_prompt=gen, tokenize=False)

    for fmt in FORMATS:
        if render(_PROBE, True) != fmt.render(_PROBE, True) or render(_PROBE, False) != fmt.render(_PROBE, False):
            continue
        no_system = _PROBE[1:]
        rendered = render(no_system, True)
        if rendered == fmt.render(no_system, True):
            return Identified(fmt, None)
        default = _default_system(fmt, rendered, no_system)
        if default is not None:
            return Identified(fmt, default)
    raise TuneforgeError(
        "the model's chat template matches none of the conversation formats tuneforge can write for Ollama "
        f"({', '.join(f.name for f in FORMATS)})",
        "export without --modelfile and write the Modelfile's TEMPLATE for this format yourself",
    )


def _default_system(fmt: ChatFormat, rendered: str, messages: list[dict[str, str]]) -> str | None:
    """The system text the template inserted before ``messages``, if that is the only difference."""
    head, tail = fmt.render_message("system", "\0").split("\0")
    rest = fmt.render(messages, True)
    if not (rendered.startswith(head) and rendered.endswith(rest)):
        return None
    inserted = rendered[: len(rendered) - len(rest)]
    if not inserted.endswith(tail) or len(inserted) < len(head) + len(tail):
        return None
    text = inserted[len(head) : len(inserted) - len(tail)]
    return text if fmt.render_message("system", text) == inserted else None


def modelfile_text(gguf_name: str, tokenizer: Any, *, system: str | None = None) -> str:
    """The Modelfile for ``gguf_name`` (a file in the same directory)."""
    found = identify_chat_format(tokenizer)
    system = system if system is not None else found.default_system
    stops = list(found.format.stop)
    eos = getattr(tokenizer, "eos_token", None)
    if isinstance(eos, str) and eos and eos not in stops:
        stops.append(eos)
    lines = [
        f"{_HEADER} (chat format: {found.format.name})",
        f"FROM ./{gguf_name}",
        "",
        f'TEMPLATE """{_quoted(found.format.go_template, "TEMPLATE")}"""',
    ]
    if system:
        lines.append(f'SYSTEM """{_quoted(system, "--system")}"""')
    lines += [f'PARAMETER stop "{s}"' for s in stops]
    return "\n".join(lines) + "\n"


def write_modelfile(gguf_path: str | Path, tokenizer: Any, *, system: str | None = None) -> Path:
    """Write ``Modelfile`` beside ``gguf_path``; replaces only a Modelfile tuneforge wrote."""
    gguf_path = Path(gguf_path)
    out = gguf_path.with_name(MODELFILE)
    if out.exists() and not out.read_text(encoding="utf-8", errors="replace").startswith(_HEADER):
        raise TuneforgeError(
            f"{out} exists and was not written by tuneforge", "export the GGUF into another directory"
        )
    text = modelfile_text(gguf_path.name, tokenizer, system=system)
    fd, tmp = tempfile.mkstemp(prefix=f".{MODELFILE}.tmp-", dir=out.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    ordinary_modes(tmp)
    os.replace(tmp, out)
    return out


def _quoted(text: str, what: str) -> str:
    if '"""' in text:
        raise TuneforgeError(f'{what} contains """, which ends a Modelfile string', 'remove the triple quote')
    return text
