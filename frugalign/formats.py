"""TRL's preference layouts, read into one internal form and written back.

TRL ("Dataset formats and types") stores a preference example in one of four
layouts; frugalign reads all four wherever a pair or training table is read:

=========================  ==========================  ==========================================
layout                     ``prompt``                  ``chosen`` / ``rejected``
=========================  ==========================  ==========================================
standard                   ``"The sky is"``            ``" blue."``
conversational             ``[{"role": "user", ..}]``  ``[{"role": "assistant", "content": ..}]``
standard-implicit          (none)                      ``"The sky is blue."``
conversational-implicit    (none)                      ``[{"role": "user", ..}, {"role": "assistant", ..}]``
=========================  ==========================  ==========================================

Internally a record has ``prompt`` (a string or chat messages, any number of
turns) and ``chosen``/``rejected`` as the *text of the final assistant turn*,
so the scorer and packing see exactly what they see for frugalign's own files.
An implicit prompt is split off as TRL's ``extract_prompt`` does it: the
longest shared prefix of chosen and rejected (characters for standard, whole
messages for conversational), and, like TRL's ``maybe_extract_prompt``, a
string ``prompt`` column beside conversational chosen/rejected (e.g.
UltraFeedback-binarized) is ignored in favour of the conversation.
frugalign's own tables (a message-list prompt with string chosen/rejected)
count as ``standard``.

:func:`to_layout` writes an internal record in any layout; commands keep the
input's layout unless ``format=`` says otherwise, so a conversational dataset
comes out conversational and TRL trains on it unchanged. A ``system`` field is
folded into the prompt messages for the conversational layouts (TRL has no
system column); the standard layouts keep it as an extra column.
"""

from __future__ import annotations

from .errors import DataError
from .records import ROLES, to_messages

LAYOUTS: tuple[str, ...] = ("standard", "conversational", "standard-implicit", "conversational-implicit")
PAIR_SIDES = ("chosen", "rejected")


def _is_messages(value) -> bool:
    return isinstance(value, list)


def record_layout(rec: dict) -> str | None:
    """The TRL layout of a record, or None for records without chosen/rejected (pools, frugalign pairs)."""
    if "chosen" not in rec or "rejected" not in rec:
        return None
    conversational = _is_messages(rec["chosen"])
    prompt = rec.get("prompt")
    if prompt is None or (conversational and not _is_messages(prompt)):
        return "conversational-implicit" if conversational else "standard-implicit"
    return "conversational" if conversational else "standard"


def _check_messages(value, where: str, name: str) -> list[dict]:
    if not isinstance(value, list) or not value:
        raise DataError(f"{where}: field '{name}': expected a non-empty list of chat messages")
    for i, msg in enumerate(value):
        if not isinstance(msg, dict):
            raise DataError(f"{where}: field '{name}[{i}]': expected a {{role, content}} object")
        if msg.get("role") not in ROLES:
            raise DataError(f"{where}: field '{name}[{i}].role': expected one of {ROLES}, got {msg.get('role')!r}")
        content = msg.get("content")
        if not isinstance(content, str) or not content.strip():
            raise DataError(f"{where}: field '{name}[{i}].content': a turn without content")
    return [{"role": m["role"], "content": m["content"]} for m in value]


def _final_turn(messages: list[dict], where: str, name: str) -> str:
    """The one assistant turn that remains of chosen/rejected once the prompt is split off."""
    if len(messages) != 1 or messages[0]["role"] != "assistant":
        roles = [m["role"] for m in messages]
        raise DataError(f"{where}: field '{name}': expected one final assistant turn after the prompt, got {roles}")
    return messages[0]["content"]


def _shared_prefix(a, b) -> int:
    """TRL's extract_prompt split point: the first difference, moved before a separating space."""
    n = min(len(a), len(b))
    idx = next((i for i in range(n) if a[i] != b[i]), n)
    if 0 < idx < n and isinstance(a, str) and a[idx - 1] == " ":
        idx -= 1
    return idx


def normalize_preference(rec: dict, where: str) -> dict:
    """A copy of ``rec`` with ``prompt`` (string or messages) and ``chosen``/``rejected`` as final-turn text."""
    layout = record_layout(rec)
    if layout is None:
        return rec
    out = dict(rec)
    if layout.startswith("conversational"):
        if not _is_messages(rec["rejected"]):
            raise DataError(f"{where}: field 'rejected': not a list of messages, but 'chosen' is (mixed layouts)")
        chosen, rejected = (_check_messages(rec[s], where, s) for s in PAIR_SIDES)
        if layout == "conversational":
            prompt = _check_messages(rec["prompt"], where, "prompt")
        else:
            split = _shared_prefix(chosen, rejected)
            if split == 0:
                raise DataError(f"{where}: field 'chosen': chosen and rejected share no prompt turns "
                                "(an implicit prompt must open both conversations)")
            prompt, chosen, rejected = chosen[:split], chosen[split:], rejected[split:]
        out["prompt"] = prompt
        out["chosen"], out["rejected"] = _final_turn(chosen, where, "chosen"), _final_turn(rejected, where, "rejected")
    elif layout == "standard-implicit":
        chosen, rejected = rec["chosen"], rec["rejected"]
        for side in PAIR_SIDES:
            if not isinstance(rec[side], str):
                raise DataError(f"{where}: field '{side}': expected a string or a list of chat messages, "
                                f"got {type(rec[side]).__name__}")
        split = _shared_prefix(chosen, rejected)
        if not chosen[:split].strip():
            raise DataError(f"{where}: field 'prompt': missing (and chosen/rejected share no implicit prompt)")
        out["prompt"], out["chosen"], out["rejected"] = chosen[:split], chosen[split:], rejected[split:]
    elif _is_messages(rec["rejected"]):
        raise DataError(f"{where}: field 'rejected': a list of messages, but 'chosen' is a string (mixed layouts)")
    return out


def check_same_layout(layout: str | None, first: tuple[str, str | None] | None, where: str) -> None:
    """One layout per file: TRL (and a reader of the file) decide a dataset's layout once."""
    if first is not None and layout != first[1]:
        raise DataError(f"{where}: layout '{layout or 'frugalign pairs'}' differs from "
                        f"'{first[1] or 'frugalign pairs'}' at {first[0]} (mixed layouts in one file)")


def _prompt_as_text(prompt, where: str) -> str:
    if isinstance(prompt, str):
        return prompt
    if len(prompt) == 1 and prompt[0]["role"] == "user":
        return prompt[0]["content"]
    raise DataError(f"{where}: a {len(prompt)}-turn chat prompt has no standard layout; use format=conversational")


def to_layout(rec: dict, layout: str, where: str = "<record>") -> dict:
    """An internal record (prompt + chosen/rejected, or a pair's response_a/response_b) in ``layout``."""
    if layout not in LAYOUTS:
        raise DataError(f"unknown layout {layout!r} (choose from {', '.join(LAYOUTS)})")
    out = dict(rec)
    for side, pair_side in zip(PAIR_SIDES, ("response_a", "response_b")):
        if side not in out and pair_side in out:  # a pair, written as TRL preference data (A as chosen)
            out[side] = out.pop(pair_side)
    prompt = out.pop("prompt")
    chosen, rejected = out.pop("chosen"), out.pop("rejected")
    if layout.startswith("conversational"):
        messages = to_messages(prompt, out.pop("system", None))
        sides = [[{"role": "assistant", "content": text}] for text in (chosen, rejected)]
        if layout == "conversational":
            return {"prompt": messages, "chosen": sides[0], "rejected": sides[1], **out}
        return {"chosen": messages + sides[0], "rejected": messages + sides[1], **out}
    text = _prompt_as_text(prompt, where)
    if layout == "standard":
        return {"prompt": text, "chosen": chosen, "rejected": rejected, **out}
    return {"chosen": text + chosen, "rejected": text + rejected, **out}


def default_layout(prompts) -> str:
    """The layout to write frugalign's own rows in: conversational when any prompt is a message list."""
    return "conversational" if any(_is_messages(p) for p in prompts) else "standard"


# ``format=`` of the commands that write pairs or training tables.
FORMATS: tuple[str, ...] = ("auto", "frugalign") + LAYOUTS
FORMAT_HELP = ("output layout: auto (the input's), frugalign (pairs as response_a/response_b), "
               + ", ".join(LAYOUTS) + " (TRL's)")


def output_layout(fmt: str, input_layout: str | None) -> str | None:
    """The layout to write (None: frugalign's own records) for ``format=fmt`` and the input's layout."""
    if fmt not in FORMATS:
        raise DataError(f"format={fmt!r}: choose from {', '.join(FORMATS)}")
    if fmt == "auto":
        return input_layout
    return None if fmt == "frugalign" else fmt
