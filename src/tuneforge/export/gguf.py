"""Write a Llama-architecture model (merged, plain transformers) as one GGUF file for llama.cpp / Ollama.

GGUF is what llama.cpp, Ollama, LM Studio and most laptop runtimes load: the weights (possibly
quantised), the hyperparameters and the tokenizer with its chat template, all in one file. The
``gguf`` package (llama.cpp's own Python writer) does the file format and the simple quantisations
(f16, bf16, q8_0, q4_0/q4_1, q5_0/q5_1) in Python; the K-quants (q4_k_m, ...) exist only in
llama.cpp's C quantiser, which ``llama-cpp-python`` exposes as ``llama_model_quantize``: for those we
write an f32 GGUF to a temporary file and let llama.cpp quantise it. What goes into the file is our
own mapping (:mod:`tuneforge.export.gguf_tensors`, :mod:`tuneforge.export.gguf_tokenizer`).

The file is written beside its target and renamed into place (a crash leaves no half file), then
given ordinary umask permissions.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from gguf import GGMLQuantizationType, GGUFWriter, LlamaFileType
from transformers import LlamaForCausalLM, PreTrainedModel

from tuneforge import __version__
from tuneforge.errors import TuneforgeError
from tuneforge.export.gguf_tensors import llama_tensors
from tuneforge.export.gguf_tokenizer import gguf_vocab, write_tokenizer
from tuneforge.export.permissions import ordinary_modes

# --quant name -> (tensor type the Python writer stores, the file type it declares)
PYTHON_QUANTS: dict[str, tuple[GGMLQuantizationType, LlamaFileType]] = {
    "f32": (GGMLQuantizationType.F32, LlamaFileType.ALL_F32),
    "f16": (GGMLQuantizationType.F16, LlamaFileType.MOSTLY_F16),
    "bf16": (GGMLQuantizationType.BF16, LlamaFileType.MOSTLY_BF16),
    "q8_0": (GGMLQuantizationType.Q8_0, LlamaFileType.MOSTLY_Q8_0),
    "q4_0": (GGMLQuantizationType.Q4_0, LlamaFileType.MOSTLY_Q4_0),
    "q4_1": (GGMLQuantizationType.Q4_1, LlamaFileType.MOSTLY_Q4_1),
    "q5_0": (GGMLQuantizationType.Q5_0, LlamaFileType.MOSTLY_Q5_0),
    "q5_1": (GGMLQuantizationType.Q5_1, LlamaFileType.MOSTLY_Q5_1),
}
# --quant name -> llama.cpp file type, quantised by llama.cpp (needs the `llama` extra)
LLAMA_CPP_QUANTS: dict[str, LlamaFileType] = {
    "q2_k": LlamaFileType.MOSTLY_Q2_K,
    "q3_k_s": LlamaFileType.MOSTLY_Q3_K_S,
    "q3_k_m": LlamaFileType.MOSTLY_Q3_K_M,
    "q3_k_l": LlamaFileType.MOSTLY_Q3_K_L,
    "q4_k_s": LlamaFileType.MOSTLY_Q4_K_S,
    "q4_k_m": LlamaFileType.MOSTLY_Q4_K_M,
    "q5_k_s": LlamaFileType.MOSTLY_Q5_K_S,
    "q5_k_m": LlamaFileType.MOSTLY_Q5_K_M,
    "q6_k": LlamaFileType.MOSTLY_Q6_K,
}
QUANTS = [*PYTHON_QUANTS, *LLAMA_CPP_QUANTS]

_GGUF_MAGIC = b"GGUF"


def save_gguf(model: PreTrainedModel, tokenizer: Any, out_file: str | Path, *, quant: str = "f16") -> Path:
    """Write ``model`` + ``tokenizer`` to ``out_file`` as GGUF with ``quant`` weights; returns the path.

    ``model`` must be a plain (merged) ``LlamaForCausalLM``; :func:`tuneforge.export.merge.merge_adapter`
    makes one from an adapter run. An existing file is replaced only if it is a GGUF file.
    """
    out = Path(out_file)
    if quant not in QUANTS:
        raise TuneforgeError(f"--quant {quant!r} is not one of {', '.join(QUANTS)}", "pick one, e.g. --quant q8_0")
    _check_llama(model)
    _check_target(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.tmp-", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if quant in PYTHON_QUANTS:
            _write(model, tokenizer, tmp, quant)
        else:
            _llama_cpp_quantize(model, tokenizer, tmp, quant)
        ordinary_modes(tmp)  # mkstemp made it 0600
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out


def _write(model: PreTrainedModel, tokenizer: Any, path: Path, quant: str) -> None:
    """The whole file through gguf's writer: hyperparameters, tokenizer, tensors."""
    config = model.config
    qtype, file_type = PYTHON_QUANTS[quant]
    n_vocab = model.get_input_embeddings().weight.shape[0]
    writer = GGUFWriter(str(path), "llama")
    writer.add_name(str(getattr(config, "name_or_path", "") or "tuneforge-export").rsplit("/", 1)[-1])
    writer.add_quantized_by(f"tuneforge {__version__}")
    writer.add_file_type(int(file_type))
    writer.add_quantization_version(2)
    _write_hparams(writer, config, n_vocab)
    write_tokenizer(writer, gguf_vocab(tokenizer, n_vocab))
    tensors = llama_tensors(
        model.state_dict(),
        n_layers=config.num_hidden_layers,
        n_heads=config.num_attention_heads,
        n_kv_heads=config.num_key_value_heads,
        tied=bool(config.tie_word_embeddings),
        qtype=qtype,
    )
    for tensor in tensors:
        writer.add_tensor(tensor.name, tensor.data, raw_dtype=tensor.qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _write_hparams(writer: GGUFWriter, config: Any, n_vocab: int) -> None:
    """The ``llama.*`` keys (names as in llama.cpp-written files such as the built-in model's)."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(_rope(config).get("rope_theta", 10000.0)))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(n_vocab)
    if head_dim * config.num_attention_heads != config.hidden_size:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)


def _rope(config: Any) -> dict:
    """transformers 5 keeps rope settings in ``rope_parameters``; older configs in ``rope_theta``."""
    params = getattr(config, "rope_parameters", None) or {}
    if not params and getattr(config, "rope_theta", None) is not None:
        params = {"rope_theta": config.rope_theta, "rope_type": "default"}
    return dict(params)


def _check_llama(model: Any) -> None:
    """Only what this writer maps: a plain Llama with unscaled rope and no biases."""
    config = getattr(model, "config", None)
    hint = "GGUF export covers Llama-architecture models; export a merged model instead (--merge DIR)"
    if not isinstance(model, LlamaForCausalLM):
        kind = getattr(config, "model_type", None) or type(model).__name__
        raise TuneforgeError(
            f"GGUF export supports the llama architecture (LlamaForCausalLM), and this model is "
            f"{kind!r} ({type(model).__name__})",
            hint,
        )
    rope_type = _rope(config).get("rope_type", "default")
    if rope_type != "default":
        raise TuneforgeError(f"GGUF export does not map rope scaling (rope_type {rope_type!r}) yet", hint)
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        raise TuneforgeError("GGUF export does not map Llama attention/MLP biases yet", hint)


def _check_target(out: Path) -> None:
    """Replace a previous GGUF, never anything else a user may care about."""
    if out.is_dir():
        raise TuneforgeError(f"--gguf target {out} is a directory", "give a file path, e.g. exports/model.gguf")
    if out.exists():
        with out.open("rb") as fh:
            if fh.read(4) != _GGUF_MAGIC:
                raise TuneforgeError(
                    f"--gguf target {out} exists and is not a GGUF file", "choose another path or delete it yourself"
                )


def _llama_cpp_quantize(model: PreTrainedModel, tokenizer: Any, path: Path, quant: str) -> None:
    """K-quants: an f32 GGUF from us, quantised by llama.cpp's own quantiser."""
    try:
        # lazy: llama_cpp is the optional `llama` extra, needed only for K-quants
        import llama_cpp
    except ImportError as exc:
        raise TuneforgeError(
            f"--quant {quant} is quantised by llama.cpp, and llama-cpp-python is not installed",
            f"pip install 'tuneforge[llama]' (compiles llama.cpp, ~10 min), or use one of {', '.join(PYTHON_QUANTS)}",
        ) from exc
    source = path.with_name(path.name + ".f32")
    try:
        _write(model, tokenizer, source, "f32")
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = int(LLAMA_CPP_QUANTS[quant])
        params.nthread = os.cpu_count() or 1
        status = llama_cpp.llama_model_quantize(str(source).encode(), str(path).encode(), params)
        if status != 0:
            raise TuneforgeError(f"llama.cpp's quantiser failed ({status}) making {quant}", "try --quant q8_0")
    finally:
        source.unlink(missing_ok=True)
