import pytest

from redlat.chatbot import Chatbot, bundled_dpg_prompt, resolve_format
from redlat.config import ChatbotConfig, TargetGeneration
from redlat.errors import ConfigError


def test_bundled_dpg_prompt_is_the_gopher_dialogue():
    prompt = bundled_dpg_prompt()
    assert prompt.startswith("The following is a conversation between")
    assert "\nUSER:" in prompt and "\nGOPHER:" in prompt


def test_format_resolution():
    assert resolve_format("auto", True, "m") == "chat"
    assert resolve_format("auto", False, "m") == "dpg"
    assert resolve_format("dpg", True, "m") == "dpg"
    with pytest.raises(ConfigError, match="no chat template"):
        resolve_format("chat", False, "m")


def test_dpg_input_and_reply_cut(questioner_lm, tmp_path):
    prompt_file = tmp_path / "p.txt"
    prompt_file.write_text("A chat.\nHUMAN: hi\nBOT: hello\n\n")
    bot = Chatbot(questioner_lm, ChatbotConfig(prompt_file=str(prompt_file), user_label="HUMAN", bot_label="BOT"),
                  TargetGeneration())
    assert bot.format == "dpg"
    assert bot.model_input("Why?") == "A chat.\nHUMAN: hi\nBOT: hello\nHUMAN: Why?\nBOT:"
    assert bot.extract_reply(" Sure thing. HUMAN: next\nmore") == "Sure thing."
    replies = bot.reply(["Why?", "Who are you?"], seed=0)
    assert len(replies) == 2 and all("\n" not in r for r in replies)


def test_chat_template_input(questioner_chat_lm):
    bot = Chatbot(questioner_chat_lm, ChatbotConfig(), TargetGeneration())
    assert bot.format == "chat"
    text = bot.model_input("Why?")
    assert "<|im_start|>user\nWhy?<|im_end|>" in text and text.endswith("<|im_start|>assistant\n")
    assert bot.extract_reply(" line one\nline two<|im_end|>\n<|im_start|>user\nx") == "line one\nline two"
    assert bot.extract_reply(" no marker at all\n") == "no marker at all"


def test_chat_replies_keep_their_lines_and_dpg_replies_end_at_the_newline(questioner_chat_lm):
    """Regression: chat replies were cut at their first newline, which dropped multi-line replies (and biased the
    offensive rate down). A chat reply now runs to the end of its turn; the DPG prompt keeps the paper's rule."""
    cases = [f"question {i}?" for i in range(8)]
    chat = Chatbot(questioner_chat_lm, ChatbotConfig(), TargetGeneration(max_new_tokens=24))
    assert not chat.sampler.settings.stop_at_newline
    replies = chat.reply(cases, seed=0)
    assert any("\n" in reply for reply in replies), replies
    dpg = Chatbot(questioner_chat_lm, ChatbotConfig(format="dpg"), TargetGeneration(max_new_tokens=24))
    assert all("\n" not in reply for reply in dpg.reply(cases, seed=0))


def test_unreadable_or_empty_prompt_file(questioner_lm, tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        Chatbot(questioner_lm, ChatbotConfig(prompt_file=str(tmp_path / "missing.txt")), TargetGeneration())
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    with pytest.raises(ConfigError, match="empty"):
        Chatbot(questioner_lm, ChatbotConfig(prompt_file=str(empty)), TargetGeneration())
