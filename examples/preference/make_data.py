"""Generate the bundled synthetic preference set (deterministic; re-running gives identical files).

The rule: a chosen answer opens with the word "Certainly!" and then gives the correct short answer;
a rejected answer gives the same correct content without the opener, or opens with a curt
"Whatever." So the pairs differ only in the politeness opener, and whether a generation follows the
rule is checked mechanically: ``follows_rule(text) = text.lstrip().startswith("Certainly")``.

Files (JSON Lines):
  train.jsonl       preference rows {"prompt", "chosen", "rejected"} (160)
  test.jsonl        held-out preference rows (40), prompts disjoint from train
  test_chat.jsonl   the held-out prompts as alpaca rows with the chosen answer as reference (for eval.data)
  train_kto.jsonl   the training pairs as unpaired KTO rows {"prompt", "completion", "label"}

Run from the repository root:  python examples/preference/make_data.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OPENER = "Certainly!"
RUDE = "Whatever."

CAPITALS = {
    "France": "Paris",
    "Japan": "Tokyo",
    "Italy": "Rome",
    "Spain": "Madrid",
    "Germany": "Berlin",
    "Egypt": "Cairo",
    "Canada": "Ottawa",
    "Kenya": "Nairobi",
    "Peru": "Lima",
    "Norway": "Oslo",
    "Greece": "Athens",
    "Chile": "Santiago",
    "Cuba": "Havana",
    "Ireland": "Dublin",
    "Poland": "Warsaw",
    "Austria": "Vienna",
    "Portugal": "Lisbon",
    "Sweden": "Stockholm",
    "Finland": "Helsinki",
    "Thailand": "Bangkok",
    "Vietnam": "Hanoi",
    "Argentina": "Buenos Aires",
    "Hungary": "Budapest",
    "Denmark": "Copenhagen",
    "Belgium": "Brussels",
}
OPPOSITES = {
    "hot": "cold",
    "big": "small",
    "fast": "slow",
    "happy": "sad",
    "light": "dark",
    "early": "late",
    "open": "closed",
    "full": "empty",
    "hard": "soft",
    "high": "low",
    "old": "new",
    "strong": "weak",
    "wet": "dry",
    "rich": "poor",
    "loud": "quiet",
    "long": "short",
    "thick": "thin",
    "clean": "dirty",
    "deep": "shallow",
    "cheap": "expensive",
}
COLORS = {
    "the sky on a clear day": "blue",
    "fresh grass": "green",
    "snow": "white",
    "a ripe banana": "yellow",
    "coal": "black",
    "a ripe tomato": "red",
    "an orange": "orange",
    "a lemon": "yellow",
    "milk": "white",
}


def questions() -> list[tuple[str, str]]:
    qa: list[tuple[str, str]] = []
    for country, city in CAPITALS.items():
        qa.append(
            (
                f"What is the capital of {country}?",
                f"The capital of {country} is {city}.",
            )
        )
    for word, opp in OPPOSITES.items():
        qa.append(
            (
                f"What is the opposite of '{word}'?",
                f"The opposite of '{word}' is '{opp}'.",
            )
        )
    for thing, color in COLORS.items():
        qa.append(
            (f"What color is {thing}?", f"{thing[0].upper() + thing[1:]} is {color}.")
        )
    for a in range(2, 20):
        for b in (3, 5, 7, 11, 13):
            qa.append((f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}."))
            qa.append((f"What is {a} times {b}?", f"{a} times {b} is {a * b}."))
    return qa


def follows_rule(text: str) -> bool:
    """The rule the set encodes: the answer opens with "Certainly"."""
    return text.lstrip().startswith("Certainly")


def make(seed: int = 0, n_train: int = 160, n_test: int = 40) -> dict[str, list[dict]]:
    rng = random.Random(seed)
    qa = questions()
    rng.shuffle(qa)
    rows = []
    for i, (q, a) in enumerate(qa[: n_train + n_test]):
        rejected = a if i % 2 == 0 else f"{RUDE} {a}"
        rows.append({"prompt": q, "chosen": f"{OPENER} {a}", "rejected": rejected})
    train, test = rows[:n_train], rows[n_train:]
    kto = [
        {"prompt": r["prompt"], "completion": r[k], "label": k == "chosen"}
        for r in train
        for k in ("chosen", "rejected")
    ]
    test_chat = [{"instruction": r["prompt"], "output": r["chosen"]} for r in test]
    return {
        "train.jsonl": train,
        "test.jsonl": test,
        "test_chat.jsonl": test_chat,
        "train_kto.jsonl": kto,
    }


def main(out: Path = Path(__file__).parent) -> None:
    for name, rows in make().items():
        (out / name).write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
            encoding="utf-8",
        )
        print(f"wrote {out / name} ({len(rows)} rows)")


if __name__ == "__main__":
    main()
