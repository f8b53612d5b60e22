"""Label Studio round trip: a batch out as tasks + a labelling config, its JSON export back in.

:func:`write_label_studio` writes, next to the batch key ``OUT.jsonl``:

* ``OUT.label-studio.xml`` — the labelling configuration: the prompt (chat
  turns as a dialogue), responses A and B side by side, one required choice
  ``A`` / ``B`` / ``tie`` and an optional comment;
* ``OUT.label-studio.json`` — one task per batch item. Task data carries the
  batch name, item index, pair id and the texts *as shown*; never ``flipped``:
  the key stays in ``OUT.jsonl``, so Label Studio (and its users) cannot see
  which response came first.

:func:`read_export` reads Label Studio's JSON export (Export -> JSON, or
``GET /api/projects/ID/export?exportType=JSON``) into the same
:class:`~frugalign.labeling.export.LabelRecord` objects as the page's labels,
so un-flipping is :func:`~frugalign.labeling.merge.labels_to_votes` as for any
other label file. Cancelled (skipped) or empty annotations and tasks nobody
labelled give no label; an annotation with a result but no ``preferred``
choice is an error (the project's config is not ours).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from ..data import atomic_path
from ..errors import DataError
from ..records import to_messages
from .export import BatchItem, LabelRecord, parse_label

CHOICE_NAME = "preferred"     # the Choices control; its value is the label as shown
COMMENT_NAME = "comment"
TASKS_SUFFIX, CONFIG_SUFFIX = ".label-studio.json", ".label-studio.xml"

# Static on purpose: every text comes in through task data ($...), which Label
# Studio renders as text, so no response can inject markup into the config.
LABEL_CONFIG = """\
<View>
  <Style>
    /* Keep line breaks and code indentation (Label Studio collapses them by default). */
    .lsf-richtext__line, .lsf-paragraphs [class*="dialoguetext"] { white-space: pre-wrap; }
  </Style>
  <Header value="Prompt"/>
  <Paragraphs name="prompt" value="$messages" layout="dialogue" nameKey="role" textKey="content"/>
  <View style="display: flex; gap: 1em">
    <View style="flex: 1 1 0; min-width: 0">
      <Header value="Response A"/>
      <Text name="response_a" value="$response_a"/>
    </View>
    <View style="flex: 1 1 0; min-width: 0">
      <Header value="Response B"/>
      <Text name="response_b" value="$response_b"/>
    </View>
  </View>
  <Header value="Which response is better?"/>
  <Choices name="preferred" toName="prompt" choice="single-radio" required="true" showInline="true">
    <Choice value="A" hint="Response A is better"/>
    <Choice value="B" hint="Response B is better"/>
    <Choice value="tie" hint="Equally good, or equally bad"/>
  </Choices>
  <TextArea name="comment" toName="prompt" rows="2" placeholder="Comment (optional)" maxSubmissions="1"/>
</View>
"""


# ---------------------------------------------------------------- out
def task_for(item: BatchItem) -> dict:
    """One Label Studio task; only what a labeller may see plus ids to find the key again."""
    return {"data": {"batch": item.batch, "item": item.index, "pair_id": item.pair_id,
                     "messages": to_messages(item.prompt, item.system), "response_a": item.shown_a,
                     "response_b": item.shown_b}}


def label_studio_paths(base: str | os.PathLike) -> tuple[Path, Path]:
    """``(BASE.label-studio.json, BASE.label-studio.xml)`` for a batch base path or key file."""
    base = Path(base)
    if base.suffix.lower() in (".jsonl", ".csv"):
        base = base.with_suffix("")
    return base.with_name(base.name + TASKS_SUFFIX), base.with_name(base.name + CONFIG_SUFFIX)


def write_label_studio(items: Sequence[BatchItem], base: str | os.PathLike) -> tuple[Path, Path]:
    """Write the tasks and the labelling config; returns both paths."""
    tasks, config = label_studio_paths(base)
    with atomic_path(tasks) as tmp:
        lines = (json.dumps(task_for(it), ensure_ascii=False) for it in items)
        Path(tmp).write_text("[\n" + ",\n".join(lines) + "\n]\n", encoding="utf-8")  # a task a line
    with atomic_path(config) as tmp:
        Path(tmp).write_text(LABEL_CONFIG, encoding="utf-8")
    return tasks, config


# ---------------------------------------------------------------- back in
def load_export(path: str | os.PathLike) -> list | None:
    """The parsed export if ``path`` is a Label Studio JSON export (a list of tasks with
    ``annotations``), else None (so other label files are read as before)."""
    p = Path(path)
    if p.suffix.lower() != ".json" or not p.is_file():
        return None
    try:
        doc = json.loads(p.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if isinstance(doc, list) and doc and all(isinstance(t, dict) and "annotations" in t for t in doc):
        return doc
    return None


def read_export(path: str | os.PathLike, annotator: str | None = None,
                tasks: list | None = None) -> list[tuple[str, LabelRecord]]:
    """Labels (as shown) from a Label Studio JSON export, one per submitted annotation.

    ``annotator`` names annotations whose ``completed_by`` is missing. Errors
    are one line naming the file, the task index and the field.
    """
    if tasks is None:
        tasks = load_export(path)
        if tasks is None:
            raise DataError(f"{path}: not a Label Studio JSON export (expected a list of tasks with 'annotations')")
    out = []
    for t, task in enumerate(tasks):
        where = f"{path}: task {t}"
        pair_id = _pair_id(task, where)
        anns = task.get("annotations")
        if not isinstance(anns, list):
            raise DataError(f"{where}: field 'annotations': expected a list, got {type(anns).__name__}")
        for a, ann in enumerate(anns):
            at = f"{where}: annotations[{a}]"
            if not isinstance(ann, dict):
                raise DataError(f"{at}: expected an object, got {type(ann).__name__}")
            if ann.get("was_cancelled") or ann.get("result") == []:
                continue  # skipped, or submitted empty: no judgement
            out.append((at, _record(ann, pair_id, at, annotator)))
    return out


def _pair_id(task, where: str) -> str:
    data = task.get("data") if isinstance(task, dict) else None
    if not isinstance(data, dict):
        raise DataError(f"{where}: field 'data': missing; was this exported from a frugalign batch?")
    if data.get("pair_id") in (None, ""):
        raise DataError(f"{where}: field 'data.pair_id': missing; tasks must come from "
                        "`frugalign label export ... to=label-studio`")
    return str(data["pair_id"])


def _record(ann: dict, pair_id: str, at: str, annotator: str | None) -> LabelRecord:
    result = ann.get("result")
    if not isinstance(result, list):
        raise DataError(f"{at}: field 'result': expected a list, got {type(result).__name__}")
    choices = [(k, r) for k, r in enumerate(result) if isinstance(r, dict) and r.get("from_name") == CHOICE_NAME]
    if len(choices) != 1:
        raise DataError(f"{at}: field 'result': expected one '{CHOICE_NAME}' choice, found {len(choices)}")
    k, choice = choices[0]
    value = choice.get("value")
    picked = value.get("choices") if isinstance(value, dict) else None
    if not isinstance(picked, list) or len(picked) != 1:
        raise DataError(f"{at}: field 'result[{k}].value.choices': expected one of A, B, tie, got {picked!r}")
    return LabelRecord(pair_id=pair_id, label=parse_label(picked[0], f"{at}: result[{k}].value.choices"),
                       annotator=_annotator(ann.get("completed_by")) or annotator or "",
                       comment=_comment(result), time=ann.get("updated_at") or ann.get("created_at"))


def _annotator(completed_by) -> str:
    """Label Studio names the user by id (an int) or, in some exports, an object with an email."""
    if isinstance(completed_by, dict):
        return str(completed_by.get("email") or completed_by.get("id") or "")
    return f"label-studio-user-{completed_by}" if completed_by not in (None, "") else ""


def _comment(result: list) -> str:
    texts = [r.get("value", {}).get("text") for r in result
             if isinstance(r, dict) and r.get("from_name") == COMMENT_NAME and isinstance(r.get("value"), dict)]
    return " ".join(str(x) for t in texts if isinstance(t, list) for x in t).strip()
