"""README's runtime section runs as pasted."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def _section_code(title: str) -> str:
    text = README.read_text()
    section = text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 1, f"expected one python block under '## {title}'"
    return blocks[0]


class TestReadme:
    def test_runtime_section_runs_as_pasted(self, tmp_path: Path) -> None:
        """The runtime example, pasted into a file, runs and prints the supervision tree."""
        script = tmp_path / "runtime_example.py"
        script.write_text(_section_code("The runtime"))
        done = subprocess.run(
            [sys.executable, str(script)],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert lines[0].startswith("root [supervisor] running")
        assert any(line.strip().startswith("counter [worker] running") for line in lines)
