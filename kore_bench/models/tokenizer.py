"""A byte-level BPE tokenizer trained locally (no hub) for the kore-tiny models.

Digits are split one per token so that arithmetic is learnable; spaces attach to the following word
(GPT-2 style), so role markers in the chat templates end in ``\\n`` to keep BPE from merging across
the prompt/answer boundary (see ``tiny.py``).
"""
from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from kore_bench.errors import KoreBenchError

PAD, BOS, EOS, UNK, IMAGE = "<pad>", "<s>", "</s>", "<unk>", "<image>"
QWEN_TOKENS = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>",
               "<|im_start|>", "<|im_end|>")
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK, IMAGE, *QWEN_TOKENS)
MIN_VOCAB = len(SPECIAL_TOKENS) + 256  # specials + the byte alphabet


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on ``texts``; identical input gives an identical tokenizer.

    Ids 0..10 are the special tokens in ``SPECIAL_TOKENS`` order (``<pad>`` = 0). Encoding adds
    ``<s>`` in front (``add_special_tokens=True``), never ``</s>``. The vocabulary may come out
    smaller than ``vocab_size`` when the corpus has few distinct merges.
    """
    if vocab_size < MIN_VOCAB:
        raise KoreBenchError(f"vocab_size must be at least {MIN_VOCAB} (specials + 256 bytes), got {vocab_size}")
    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # The BPE trainer breaks count ties by token ids, so identical input gives identical merges
    # (checked across processes); only the order and content of ``texts`` matter.
    tok.train_from_iterator(texts, trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS, eos_token=EOS, unk_token=UNK, pad_token=PAD,
        extra_special_tokens={"image_token": IMAGE},
        clean_up_tokenization_spaces=False,
    )
