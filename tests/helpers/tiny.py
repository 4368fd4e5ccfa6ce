"""Tiny, offline stand-ins for a real chat model and its tokenizer.

Unit tests need something that behaves like SmolLM2-style Llama + ChatML without a download and in
well under a second. The tokenizer is a byte-level BPE trained in memory, so it can encode *any*
text (including ``<script>`` or non-ASCII) the way a real tokenizer would, and its special-token
ids match SmolLM2's (0 = ``<|endoftext|>``, 1 = ``<|im_start|>``, 2 = ``<|im_end|>``), which is also
what :func:`tiny_llama` puts in the model config.
"""

from __future__ import annotations

import functools

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

PAD_TOKEN = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = [PAD_TOKEN, IM_START, IM_END]  # order fixes ids 0, 1, 2

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# A few hundred characters of ordinary English: enough for BPE to learn common merges, so encoded
# prompts are a realistic handful of tokens rather than one token per byte.
_CORPUS = [
    "The quick brown fox jumps over the lazy dog. ",
    "A language model predicts the next token from the tokens before it. ",
    "Fine-tuning adapts a pretrained model to a new task with a small learning rate. ",
    "You are a helpful assistant. Answer the question briefly and clearly. ",
    "What is the capital of France? The capital of France is Paris. ",
    "Please return the fields as JSON: name, date, amount, and currency. ",
    "The user asked a question, and the assistant gave a short answer. ",
    "Hello! How are you today? I am fine, thank you for asking. ",
]

TOKENIZER_VOCAB_SIZE = 320  # 256 byte symbols + 3 specials + ~60 merges


@functools.lru_cache(maxsize=1)
def _trained_tokenizer_json() -> str:
    """Train once per process; tests get fresh wrapper objects from the cached JSON."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=TOKENIZER_VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    return tok.to_str()


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A ChatML byte-level BPE tokenizer: eos = ``<|im_end|>``, pad = ``<|endoftext|>``, no bos."""
    backend = Tokenizer.from_str(_trained_tokenizer_json())
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=IM_END,
        pad_token=PAD_TOKEN,
        additional_special_tokens=[IM_START],
        chat_template=CHATML_TEMPLATE,
    )


def tiny_llama(vocab_size: int, tie: bool = True, seed: int = 0) -> LlamaForCausalLM:
    """A randomly initialised 2-layer Llama (hidden 64, GQA 4/2 heads) in eval mode.

    GQA and both tied and untied embeddings are options so tests exercise the same shapes and
    weight-sharing paths as real small models. Token ids for bos/eos/pad follow :func:`tiny_tokenizer`.
    """
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=tie,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    return model.eval()


def tiny_lora(vocab_size: int, attention: str | None = None):
    """:func:`tiny_llama` (untied) with a LoRA adapter (r=4, no dropout) whose weights are all non-zero.

    A fresh adapter's B is zero, so its gradients of A vanish; random weights make tests that compare
    two computations of the same loss compare every adapter gradient too.
    """
    from tuneforge.config.schema import MethodSection  # lazy: the helper module stays importable without tuneforge's stack
    from tuneforge.methods import apply_method  # lazy: as above

    base = tiny_llama(vocab_size, tie=False)
    if attention:
        base.set_attn_implementation(attention)
    torch.manual_seed(0)
    model = apply_method(base, MethodSection(type="lora", lora={"r": 4, "dropout": 0.0}))
    for p in model.parameters():
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.05)
    return model
