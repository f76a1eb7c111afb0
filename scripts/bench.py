"""`make bench`: run every bench/*.py script in turn (each starts what it needs)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    scripts = sorted(p for p in (ROOT / "bench").glob("*.py") if p.name != "common.py")
    if not scripts:
        print("no bench scripts found")
        return 1
    failed = []
    for script in scripts:
        print(f"\n##### {script.relative_to(ROOT)} #####", flush=True)
        if subprocess.call([sys.executable, str(script), *sys.argv[1:]], cwd=ROOT) != 0:
            failed.append(script.name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
