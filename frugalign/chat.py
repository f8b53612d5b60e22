"""Chat formatting: system prompts, rendering with each model's own template,
and locating the response inside the rendered conversation.

Every model scores and generates with *its own* chat template, so two models
with different tokenizers (Dr.SoW's strong and weak models) see the same
conversation in their own format. Tokenizers without a template (tiny test
models, base models) fall back to plain concatenation.
"""

from __future__ import annotations

from .errors import DataError
from .records import Prompt, to_messages, with_system  # noqa: F401  (re-exported: chat formatting lives here)

# End-of-turn markers used by common chat templates; generation stops at them
# and scoring counts the first one after a response (the choice to stop).
END_OF_TURN_TOKENS = ("<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|end|>", "<|endoftext|>")


def has_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render_prompt(tokenizer, prompt: Prompt, system: str | None = None) -> str:
    """The text a model sees before its reply (generation prompt included)."""
    messages = to_messages(prompt, system)
    if has_template(tokenizer):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return "\n\n".join(m["content"] for m in messages) + "\n\n"


def render_with_response(tokenizer, prompt: Prompt, response: str,
                         system: str | None = None) -> tuple[str, int, int]:
    """Render prompt + response as one conversation.

    Returns ``(text, start, end)``: the response occupies ``text[start:end]``.
    The boundary comes from the rendered text itself, so the caller can
    tokenise the whole conversation at once and map characters to tokens
    (tokenising the halves separately can split a token at the seam).
    """
    head = render_prompt(tokenizer, prompt, system)
    if not has_template(tokenizer):
        return head + response, len(head), len(head) + len(response)
    messages = to_messages(prompt, system) + [{"role": "assistant", "content": response}]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    # Templates usually extend the generation prompt verbatim; search from the
    # shared prefix so a response that repeats prompt text is found in the right place.
    shared = _common_prefix_len(head, text)
    start = text.find(response, shared)
    if start < 0:
        raise DataError("chat template dropped or altered the response text; "
                        "cannot locate the response tokens")
    return text, start, start + len(response)


def _common_prefix_len(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def template_adds_special_tokens(tokenizer) -> bool:
    """Rendered templates already contain BOS etc.; raw text needs the tokenizer's."""
    return not has_template(tokenizer)


def end_of_turn_ids(tokenizer) -> list[int]:
    """Token ids that end an assistant turn for this tokenizer (EOS first)."""
    ids = []
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    vocab = tokenizer.get_vocab()
    for tok in END_OF_TURN_TOKENS:
        if tok in vocab and vocab[tok] not in ids:
            ids.append(vocab[tok])
    return ids
