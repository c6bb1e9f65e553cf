"""`vitlab data SPEC`: the dataset report, and bad files fatal with --on-error raise (exit 2, message)."""
from PIL import Image

from vitlab.cli import main


def test_data_command_reports_counts_and_bad_files(tmp_path, capsys):
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        Image.new("RGB", (6, 6), (9, 9, 9)).save(tmp_path / cls / "ok.png")
    (tmp_path / "dog" / "broken.jpg").write_bytes(b"nope")
    assert main(["data", str(tmp_path), "--size", "4"]) == 0
    out = capsys.readouterr()
    assert "2 images, 3x4x4 uint8, 2 classes" in out.out and "1 file(s) skipped:" in out.out
    assert sum("broken.jpg" in line for line in out.out.splitlines()) == 1 and "broken.jpg" not in out.err  # listed once, in the report
    assert main(["data", str(tmp_path), "--on-error", "raise"]) == 2
    assert "broken.jpg" in capsys.readouterr().err
    assert main(["data", str(tmp_path / "missing")]) == 2
