"""The bundled synthetic preference set: committed files equal the generator's output and obey the rule."""

import json
from pathlib import Path

from examples.preference.make_data import follows_rule, make
from tuneforge.data.preference import load_preference_records

DATA = Path(__file__).resolve().parents[2] / "examples" / "preference"


def test_committed_files_equal_the_generator():
    for name, rows in make().items():
        lines = (DATA / name).read_text(encoding="utf-8").splitlines()
        assert [json.loads(line) for line in lines] == rows, name


def test_rule_separates_chosen_from_rejected_and_splits_are_disjoint():
    train = load_preference_records(DATA / "train.jsonl").records
    test = load_preference_records(DATA / "test.jsonl").records
    assert len(train) == 160 and len(test) == 40
    for r in train + test:
        assert follows_rule(r.chosen) and not follows_rule(r.rejected)
    assert not {r.prompt for r in train} & {r.prompt for r in test}
    kto = load_preference_records(DATA / "train_kto.jsonl").records
    assert len(kto) == 320 and sum(r.label for r in kto) == 160
