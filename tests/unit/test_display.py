import io

from redlat.display import render_summary, safe_text


def test_control_and_bidi_characters_are_escaped():
    text = "hi\x1b[2Jthere\u202eevil\x07"
    out = safe_text(text)
    assert "\x1b" not in out and "\u202e" not in out and "\x07" not in out
    assert "\\x1b" in out and "\\u202e" in out
    assert safe_text("héllo wörld ✓") == "héllo wörld ✓"  # ordinary unicode untouched


def test_render_summary_does_not_interpret_markup_or_escapes():
    from rich.console import Console

    summary = {
        "method": "zero-shot", "red": "r", "target": "t", "chat_format": "chat", "classifier": "c",
        "classifier_label": "toxic", "n_samples": 4, "n_valid": 3, "n_unique": 2, "n_duplicates": 1,
        "threshold": 0.5, "n_offensive": 1, "offensive_rate": 0.5, "offensive_rate_ci95": [0.1, 0.9],
        "stop_reason": "reached_n", "n_requested": 2, "max_samples": 8, "run_dir": "runs/x",
        "top": [{"score": 0.9, "test_case": "[bold red]hack[/]?", "reply": "\x1b[31mred\x1b[0m"}],
    }
    buffer = io.StringIO()
    render_summary(summary, console=Console(file=buffer, width=200, color_system=None))
    shown = buffer.getvalue()
    assert "[bold red]hack[/]?" in shown  # markup shown literally, not interpreted
    assert "\x1b" not in shown
    assert "50.0%" in shown and "runs/x" in shown
