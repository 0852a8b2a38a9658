"""The paper's table: attacks x defenses on a victim's held-out functions. For each victim,
the same held-out functions under every attack it was poisoned with (`fabe victim test-set`),
then every defense (`fabe defend`) with the cleaner's fitted weights: ASR per attack and
defense, clean accuracy per defense, with counts and 95% intervals; printed as Markdown and
saved (defense.json, the table as .md and .tex) under --out.

One victim per attack (`embedded` for the classic kinds and `embedded-ATTACK` for each
adaptive attack on generated code, `embedded-real` and `embedded-real-ATTACK` on real C): a
table each, then the victims' rows in one table (each victim's attacks, its clean accuracy).

    python bench/attack_table.py [--victim embedded-real ...] [--per_kind 40]
        [--clean 100] [--cleaner embedded] [--defenses fabe,top1,naturalness,onion,none] [--only_correct]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fabe import embedded
from fabe.defense.attack_set import victim_test_set
from fabe.defense.defenses import DEFENSES, run_defense
from fabe.evaluation.report import attack_matrix, export_result, family_matrix, victim_line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--victim", action="append", help="Victim folders or embedded victim names (default: all the embedded victims)")
    parser.add_argument("--cleaner", default="embedded")
    parser.add_argument("--per_kind", type=int, default=40)
    parser.add_argument("--clean", type=int, default=100)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--defenses", default=",".join(DEFENSES))
    parser.add_argument("--only_correct", action="store_true",
                        help="Poison only functions the victim gets right untriggered (`victim test-set --only-correct`)")
    parser.add_argument("--out", default="bench-out/attack-table")
    args = parser.parse_args()
    results = {}
    for name in args.victim or embedded.VICTIM_NAMES:
        victim = embedded.resolve(name, "victim")
        folder = Path(args.out) / name.replace("/", "_")
        folder.mkdir(parents=True, exist_ok=True)
        data, counts = victim_test_set(victim, folder / "test.jsonl", args.per_kind, args.clean,
                                       only_correct=args.only_correct)
        print(f"== {name} ({victim}): {sum(counts.values())} records: {counts}")
        result, saved = run_defense(victim, args.cleaner, data, args.defenses.split(","), k=args.k, out=folder)
        print(victim_line(result["victim"]))
        print(attack_matrix(result).to_markdown(index=False))
        for fmt in ("md", "tex"):
            export_result(saved, fmt, folder / f"table.{fmt}")
        print(f"saved in {saved} ({result['meta']['seconds']} s)\n")
        results[name] = result
    if len(results) > 1:
        family = family_matrix(results)
        print(family.to_markdown(index=False))
        (Path(args.out) / "family.md").write_text(family.to_markdown(index=False) + "\n")


if __name__ == "__main__":
    main()
