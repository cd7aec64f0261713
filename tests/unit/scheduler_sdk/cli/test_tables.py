"""The CLI's tables on narrow terminals: cells fold, ids stay whole on a line while they can, then the columns
fold into the rows; nothing is ever cut short with an ellipsis."""

from __future__ import annotations

import pytest

from scheduler_sdk.cli.tables import Column, FitTable, unbroken_columns
from tests.unit.scheduler_sdk.cli.render import assert_fits_and_nothing_is_cut, assert_ids_whole, column_text, render

FRAMEWORK = "3f1c0d9a2b7e-F12"
AGENTS = ["3f1c0d9a2b7e-A1", "3f1c0d9a2b7e-A2"]


def tasks_table() -> FitTable:
    headers = ["ID", "NAME", "FRAMEWORK", "AGENT", "STATE", "CPUS", "MEM", "EXIT"]
    table = FitTable("2 tasks", headers, ids=("ID", "FRAMEWORK", "AGENT"))
    for i, agent in enumerate(AGENTS):
        table.add_row(f"train-{i}", f"train-{i}", FRAMEWORK, agent, "TASK_FINISHED", "0.5", "64", "0")
    return table


@pytest.mark.parametrize("width", [200, 100, 80, 60, 40, 30])
def test_every_id_is_whole_on_a_line_at_any_reasonable_width(width: int) -> None:
    text = render(tasks_table(), width)
    assert_fits_and_nothing_is_cut(text, width)
    assert_ids_whole(text, ["train-0", "train-1", FRAMEWORK, *AGENTS])


def test_a_wide_terminal_shows_the_table_as_it_is() -> None:
    text = render(tasks_table(), 200)
    header = next(line for line in text.splitlines() if "FRAMEWORK" in line)
    assert header.split("┃")[0].strip() == "ID" and "EXIT" in header
    assert "train-0 │ train-0 │ " + FRAMEWORK in text


def test_on_a_narrower_terminal_other_cells_fold_and_the_ids_stay_on_their_lines() -> None:
    text = render(tasks_table(), 80)
    assert "TASK_FINISHED" not in text and "TASK" in text  # the state folds ...
    assert "TASK_FINISHED" in column_text(text, 4)  # ... every character of it still there
    row = next(line for line in text.splitlines() if "train-0" in line)
    assert FRAMEWORK in row and AGENTS[0] in row  # the ids stay in one row of the table


def test_too_narrow_for_the_ids_side_by_side_each_row_is_a_block() -> None:
    text = render(tasks_table(), 40)
    lines = text.splitlines()
    assert any(line.split("│")[0].strip() == "FRAMEWORK" and FRAMEWORK in line for line in lines), text
    assert sum(1 for line in lines if line.split("│")[0].strip() == "ID") == 2  # one block per row


def test_an_id_wider_than_the_terminal_folds_with_every_character_kept() -> None:
    long_id = "job-" + "x" * 40 + "-end"
    table = FitTable("1 job", ["ID", "STATE"])
    table.add_row(long_id, "running")
    text = render(table, 24)
    assert_fits_and_nothing_is_cut(text, 24)
    assert long_id not in text and long_id in column_text(text, 1)


def test_cells_are_text_not_markup() -> None:
    table = FitTable("1 row", ["ID", "MESSAGE"])
    table.add_row("[bold]odd-id[/]", "a [red] message")
    text = render(table, 80)
    assert "[bold]odd-id[/]" in text and "a [red] message" in text


def test_a_row_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(ValueError, match="2 cells in a table of 3 columns"):
        FitTable("t", ["A", "B", "C"]).add_row("a", "b")


def test_columns_given_as_headers_take_the_cli_id_headers() -> None:
    table = FitTable("t", ["ID", "HOSTNAME", "AGENT", Column("MEM", "right")])
    assert [c.id for c in table.columns] == [True, True, True, False]
    assert table.columns[3].justify == "right"


# -- which columns stay whole ------------------------------------------------------------------------------------
def test_everything_stays_whole_when_the_table_fits() -> None:
    assert unbroken_columns([10, 20], [True, False], [True, False], 10 + 20 + 4 + 1) == {0, 1}


def test_ids_first_then_other_single_words_narrowest_first_while_the_folding_columns_keep_a_few_characters() -> None:
    natural, one_word, ids = [12, 30, 13, 8], [True, False, True, True], [False, False, True, False]
    # at 3 characters each plus padding, and the separators: 5+5+5+5+3 = 23; the id adds 10, the 8 wide word 5,
    # the 12 wide one 9
    assert unbroken_columns(natural, one_word, ids, 23 + 9) is None
    assert unbroken_columns(natural, one_word, ids, 23 + 10) == {2}
    assert unbroken_columns(natural, one_word, ids, 23 + 10 + 8) == {2, 3}
    assert unbroken_columns(natural, one_word, ids, 23 + 10 + 5 + 9) == {2, 3, 0}


def test_no_table_when_an_id_cannot_stay_whole() -> None:
    # 5 + 5 + 5 and 2 separators: 17; the first id adds 9 (26), the second 10 (36)
    assert unbroken_columns([12, 30, 13], [True, False, True], [True, False, True], 36) == {0, 2}
    assert unbroken_columns([12, 30, 13], [True, False, True], [True, False, True], 35) is None
    assert unbroken_columns([4] * 10, [False] * 10, [False] * 10, 50) is None  # too many columns for the width


def test_metrics_rows_are_plain_text_and_fit_a_narrow_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A role may be named `a[/]b` (rich markup): the metrics table prints it as it is, within 60 columns."""
    from scheduler_sdk.cli import metrics

    rows = [["aiomesos_master_role_weight", "role=a[/]b", "2", "gauge", "a role's weight [red]x"]]
    monkeypatch.setenv("COLUMNS", "200")
    metrics.print_rows(rows, "master metrics of [bold]m")
    out = capsys.readouterr().out
    assert "role=a[/]b" in out and "[red]x" in out and "[bold]m" in out
    monkeypatch.setenv("COLUMNS", "60")
    metrics.print_rows(rows, "master metrics")
    narrow = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in narrow) <= 60 and any("aiomesos_master_role_weight" in line for line in narrow)
