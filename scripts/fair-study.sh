#!/usr/bin/env bash
# The fair study (issue 22) in parts, each resumable: rerun the same line and finished arms are skipped.
# Summaries go to docs/results/ so a part finished on one machine is completed on the next (same CPU kind:
# the shared pool's fingerprint includes the precision auto chose).
#   scripts/fair-study.sh house-style 1     # part 1: seed 0 of every method at 10 %
#   scripts/fair-study.sh house-style 2     # part 2: seeds 1-2 of dpo-seed and hybrid
#   scripts/fair-study.sh house-style 3     # part 3: hybrid and dpo-seed at 3 % and 30 %
#   scripts/fair-study.sh house-style 4 41  # part 4: DPO-100 at 41 steps (combined's first training + its SPA rounds)
#   scripts/fair-study.sh house-style 5     # part 5: seeds 1-2 of DPO-100 (the reference's own training noise)
#   scripts/fair-study.sh ifeval 6          # part 6: hybrid with Dr.SoW's margin as a fourth signal (seed 0; '6 "1, 2"': seeds 1-2)
#   scripts/fair-study.sh ifeval 7          # part 7: CW-PO's weak judges (MiniLM head; SmolLM2 + LoRA reward head)
#                                           #   fitted on part 6's 77 human labels, measured against gold (no training)
#   scripts/fair-study.sh ifeval 8 0        # part 8: steps chosen on validation prompts (every arm keeps its best of
#                                           #   steps 8/16/24/32; frugalign.validation), seed 0 of DPO-100, dpo-seed and
#                                           #   hybrid + Dr.SoW's margin at 10 %, in their own summary (…-validated.json)
#   scripts/fair-study.sh ifeval 8 0 0.03   #   the same at another budget
#   scripts/fair-study.sh ifeval 9 5        # part 9: validation also chooses the annotator: part 8's hybrid arm with
#                                           #   the same training on its human labels alone as more candidates
#                                           #   (validation.also=[human-only]); recipe-frugal
set -euo pipefail
task=${1:?task: house-style | ifeval}
part=${2:?part: 1 to 9}
py=${PYTHON:-.venv/bin/python}
common=(study-fair-"$task" summary=docs/results/study-fair-"$task".json)
case "$part" in
  1) "$py" -m frugalign study "${common[@]}" "methods=[dpo-100, hybrid, dpo-seed, drsow, combined]" ;;
  2) "$py" -m frugalign study "${common[@]}" "methods=[dpo-100, hybrid, dpo-seed]" "seeds=[1, 2]" \
       "method_seeds={dpo-100: [0]}" ;;
  3) "$py" -m frugalign study "${common[@]}" "methods=[dpo-100, hybrid, dpo-seed]" "budgets=[0.03, 0.3]" \
       "method_seeds={dpo-100: [0]}" ;;
  4) steps=${3:?part 4 needs the step count to match}
     "$py" -m frugalign study "${common[@]}" "methods=[dpo-100]" "variants={steps$steps: {train.max_steps: $steps}}" ;;
  5) "$py" -m frugalign study "${common[@]}" "methods=[dpo-100]" "seeds=[1, 2]" ;;
  6) "$py" -m frugalign study "${common[@]}" "methods=[hybrid]" "seeds=[${3:-0}]" \
       "variants={drsow: {hybrid.signals: [length, unfinished, format, drsow]}}" ;;
  7) arm=runs/study-fair-$task/arms/hybrid-b0.1-random-s0-drsow   # part 6's arm: seed 0's 10 % random labels
     [ -d "$arm/select" ] || { echo "part 7 reads part 6's arm directory $arm: run part 6 first" >&2; exit 2; }
     out=runs/study-fair-$task/weak-judge; mkdir -p "$out" docs/results/weak-judge
     for backbone in minilm smollm2-135m-instruct; do
       /usr/bin/time -f "$backbone: %e s" "$py" -m frugalign annotate --method weak-judge \
         --labels "$arm/label/human.jsonl" --label-pairs "$arm/select/human_pairs.jsonl" \
         --input "$arm/select/rest_pairs.jsonl" --judge.backbone "$backbone" --output "$out/$backbone.jsonl"
       "$py" -m frugalign eval annotations --annotations "$out/$backbone.jsonl" \
         --reference "$arm/label/gold_rest.jsonl" --output "docs/results/weak-judge/$task-$backbone.json"
     done
     cat "$arm/annotate/auto.jsonl" "$arm/annotate/gated.jsonl" > "$out/hybrid+drsow-all.jsonl"   # kept + gated
     "$py" -m frugalign eval annotations --annotations "$out/hybrid+drsow-all.jsonl" \
       --reference "$arm/label/gold_rest.jsonl" --output "docs/results/weak-judge/$task-hybrid+drsow-ungated.json" ;;
  8) seed=${3:?part 8 needs a seed}; budget=${4:-0.1}
     validated=(study-fair-"$task" summary=docs/results/study-fair-"$task"-validated.json validation.every=8
                "seeds=[$seed]" "budgets=[$budget]")
     "$py" -m frugalign study "${validated[@]}" "methods=[dpo-100, dpo-seed]"
     "$py" -m frugalign study "${validated[@]}" "methods=[hybrid]" \
       "variants={drsow: {hybrid.signals: [length, unfinished, format, drsow]}}" ;;
  9) seed=${3:?part 9 needs a seed}
     "$py" -m frugalign study study-fair-"$task" summary=docs/results/study-fair-"$task"-validated.json \
       validation.every=8 "seeds=[$seed]" "budgets=[${4:-0.1}]" "methods=[hybrid]" \
       "variants={drsow_choice: {hybrid.signals: [length, unfinished, format, drsow], validation.also: [human-only]}}" ;;
  *) echo "part must be 1 to 9" >&2; exit 2 ;;
esac
