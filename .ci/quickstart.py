"""Print the README's quick-start commands (all, or just the test command with --test)."""

import re
import sys
from pathlib import Path


def quickstart_commands(readme: Path) -> list[str]:
    lines = readme.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(r"^#+\s+.*quick start", line, re.I))
    commands, inside = [], False
    for line in lines[start + 1:]:
        if re.match(r"^#+\s", line) and not inside:
            break
        if line.strip().startswith("```"):
            inside = not inside
            continue
        if inside and line.strip() and not line.strip().startswith("#"):
            commands.append(line.strip())
    return commands


if __name__ == "__main__":
    cmds = quickstart_commands(Path(__file__).resolve().parent.parent / "README.md")
    if "--test" in sys.argv:
        cmds = [c for c in cmds if "pytest" in c]
        if len(cmds) != 1:
            sys.exit("README quick start must hold exactly one pytest command")
    print("\n".join(cmds))
