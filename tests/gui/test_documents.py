"""The file behind the editor: atomic saves, unsaved-edit tracking, news of other programs
changing the file (and none for our own saves), and the recent-files list."""

from __future__ import annotations

import os
import stat

import pytest
from PySide6.QtCore import QSettings
from topograd.dsl.commands.common import load_spec
from topograd.gui.diagnostics import diagnose
from topograd.gui.documents import BOM, RECENT_LIMIT, UNTITLED, Document, RecentFiles

WAIT_MS = 3000  # the longest a file-system notice may take to arrive


@pytest.fixture
def document(qtbot):
    return Document()


def test_open_reads_utf8_and_save_keeps_the_bom_and_line_ends(document, tmp_path):
    path = tmp_path / "crlf.tg"
    path.write_bytes(BOM + b"let a = 1\r\nlet b = 2\r\n")
    assert document.open(path) == "let a = 1\nlet b = 2\n"
    assert document.path == path and document.name == str(path)
    document.save("let a = 1\nlet c = 3\n")
    assert path.read_bytes() == BOM + b"let a = 1\r\nlet c = 3\r\n"


def test_an_opened_file_with_a_bom_checks_as_the_cli_checks_it(document, tmp_path, capsys):
    path = tmp_path / "bom.tg"
    path.write_bytes(BOM + b"let a = zz\n")
    load_spec(path)
    printed = capsys.readouterr().err
    (problem,) = diagnose(document.open(path), document.name).problems
    assert f"{path}:{problem.pos.line}:{problem.pos.column}: error: {problem.message}" in printed
    assert (problem.pos.line, problem.pos.column) == (1, 9)


def test_open_errors_name_the_file(document, tmp_path):
    missing = tmp_path / "missing.tg"
    with pytest.raises(FileNotFoundError) as raised:
        document.open(missing)
    assert raised.value.filename == str(missing)
    latin = tmp_path / "latin.tg"
    latin.write_bytes("# caf\u00e9\n".encode("latin-1"))
    with pytest.raises(UnicodeDecodeError, match=r"latin\.tg"):
        document.open(latin)
    assert document.path is None


def test_a_failed_save_leaves_the_old_file_and_no_temporary(document, tmp_path, monkeypatch):
    path = tmp_path / "model.tg"
    path.write_text("let a = 1\n", encoding="utf-8")
    document.open(path)
    document.set_dirty(True)

    def refuse(source, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="No space left"):
        document.save("let a = 2\n")
    assert path.read_text(encoding="utf-8") == "let a = 1\n"
    assert sorted(os.listdir(tmp_path)) == ["model.tg"]
    assert document.dirty


def test_save_keeps_the_files_permissions_and_follows_a_link(document, tmp_path):
    real = tmp_path / "real.tg"
    real.write_text("let a = 1\n", encoding="utf-8")
    real.chmod(0o640)
    link = tmp_path / "link.tg"
    link.symlink_to(real)
    document.open(link)
    document.save("let a = 2\n")
    assert link.is_symlink()
    assert real.read_text(encoding="utf-8") == "let a = 2\n"
    assert stat.S_IMODE(real.stat().st_mode) == 0o640


def test_dirty_flag_signals_only_when_it_flips(document, qtbot, tmp_path):
    seen = []
    document.dirtyChanged.connect(seen.append)
    document.set_dirty(True)
    document.set_dirty(True)
    assert seen == [True] and document.dirty
    with qtbot.waitSignal(document.pathChanged, timeout=100) as blocker:
        document.save_as(tmp_path / "new.tg", "let a = 1\n")
    assert blocker.args == [tmp_path / "new.tg"]
    assert seen == [True, False] and not document.dirty


def test_an_untitled_document_is_saved_with_save_as(document, tmp_path):
    assert document.path is None and document.name == UNTITLED
    with pytest.raises(ValueError, match="save_as"):
        document.save("let a = 1\n")
    document.save_as(tmp_path / "first.tg", "let a = 1\n")
    assert (tmp_path / "first.tg").read_text(encoding="utf-8") == "let a = 1\n"
    document.new()
    assert document.path is None


def test_another_writer_is_noticed_and_our_own_saves_are_not(document, qtbot, tmp_path):
    path = tmp_path / "watched.tg"
    path.write_text("let a = 1\n", encoding="utf-8")
    document.open(path)

    with qtbot.assertNotEmitted(document.changedOnDisk, wait=400):
        document.save("let a = 2\n")  # replaces the file: the watch must come back
    with qtbot.waitSignal(document.changedOnDisk, timeout=WAIT_MS) as blocker:
        path.write_text("let a = 3\n", encoding="utf-8")
    assert blocker.args == [str(path)]

    with qtbot.assertNotEmitted(document.changedOnDisk, wait=400):
        document.save("let a = 4\n")
    other = tmp_path / "elsewhere.tmp"
    other.write_text("let a = 5\n", encoding="utf-8")
    with qtbot.waitSignal(document.changedOnDisk, timeout=WAIT_MS):
        os.replace(other, path)  # an editor that saves by renaming over the file
    with qtbot.waitSignal(document.changedOnDisk, timeout=WAIT_MS):
        path.write_text("let a = 6\n", encoding="utf-8")


def test_a_new_document_stops_watching_the_old_file(document, qtbot, tmp_path):
    path = tmp_path / "old.tg"
    path.write_text("let a = 1\n", encoding="utf-8")
    document.open(path)
    document.new()
    with qtbot.assertNotEmitted(document.changedOnDisk, wait=400):
        path.write_text("let a = 2\n", encoding="utf-8")


# --- recent files ------------------------------------------------------------------------------
@pytest.fixture
def settings(tmp_path):
    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


def make_files(folder, count: int) -> list[str]:
    paths = []
    for index in range(count):
        path = folder / f"m{index}.tg"
        path.write_text("", encoding="utf-8")
        paths.append(str(path))
    return paths


def test_recent_files_most_recent_first_without_duplicates(settings, tmp_path):
    a, b, c = make_files(tmp_path, 3)
    recent = RecentFiles(settings)
    assert recent.paths() == []
    for path in (a, b, c, a):
        recent.add(path)
    assert recent.paths() == [a, c, b]
    reread = QSettings(settings.fileName(), QSettings.Format.IniFormat)
    assert RecentFiles(reread).paths() == [a, c, b]
    assert recent.remove(c) == [a, b]


def test_recent_files_keep_the_latest_ten(settings, tmp_path):
    paths = make_files(tmp_path, RECENT_LIMIT + 3)
    recent = RecentFiles(settings)
    for path in paths:
        recent.add(path)
    assert recent.paths() == paths[::-1][:RECENT_LIMIT]


def test_recent_files_drop_missing_files_and_store_absolute_paths(settings, tmp_path, monkeypatch):
    a, b = make_files(tmp_path, 2)
    recent = RecentFiles(settings)
    monkeypatch.chdir(tmp_path)
    recent.add("m0.tg")
    recent.add(b)
    os.remove(b)
    assert recent.paths() == [a]
    assert settings.value("recent_files", [], type=list) == [a]
