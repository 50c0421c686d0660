"""A small multiple-choice task written by the tests, loaded by lm-eval from local files."""
from __future__ import annotations

import json
from pathlib import Path

CAPITALS = [
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
    ("Japan", "Tokyo"), ("Russia", "Moscow"), ("England", "London"), ("Egypt", "Cairo"),
    ("China", "Beijing"), ("Greece", "Athens"), ("Portugal", "Lisbon"), ("Austria", "Vienna"),
    ("Ireland", "Dublin"), ("Norway", "Oslo"), ("Sweden", "Stockholm"), ("Poland", "Warsaw"),
    ("Hungary", "Budapest"), ("Denmark", "Copenhagen"), ("Finland", "Helsinki"),
    ("Thailand", "Bangkok"), ("Kenya", "Nairobi"), ("Argentina", "Buenos Aires"),
    ("Peru", "Lima"), ("Cuba", "Havana"),
]

TASK_YAML = """task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: What is the capital of {{{{country}}}}?\\nAnswer:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{label}}}}"
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
"""


def write_capitals_task(folder: Path, name: str = "capitals_local") -> Path:
    """Each country with four candidate cities (its capital and three others, rotated)."""
    folder.mkdir(parents=True, exist_ok=True)
    cities = [city for _, city in CAPITALS]
    rows = []
    for i, (country, capital) in enumerate(CAPITALS):
        others = [cities[(i + k) % len(cities)] for k in (5, 11, 17)]
        choices = others[:]
        label = i % 4
        choices.insert(label, capital)
        rows.append({"country": country, "choices": [f" {c}" for c in choices], "label": label})
    data = folder / f"{name}.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / f"{name}.yaml").write_text(TASK_YAML.format(name=name, data=data.resolve()))
    return folder
