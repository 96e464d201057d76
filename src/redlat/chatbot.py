"""The target chatbot: how a test case becomes model input, and how a reply is cut from model output.

A chat model (one whose tokenizer has a chat template) gets the test case as a user message in its template; its
reply is everything up to its end of turn (its end-of-sequence token, or an end-of-turn marker left in the text), so
multi-line replies are kept whole. A plain LM is wrapped in the Dialogue-Prompted Gopher prompt: prompt + "\\nUSER: "
+ test case + "\\nGOPHER:"; its reply ends at the next user turn or newline, as in Perez et al. (2022). A system
message (`chatbot.system`) comes first: the chat template's system turn, or a paragraph before the DPG prompt. In a
dialogue the earlier turns come between the prompt and the test case, in the same format.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from redlat.config import ChatbotConfig, TargetGeneration
from redlat.engines import make_sampler
from redlat.errors import ConfigError
from redlat.generation import SamplingSettings

if TYPE_CHECKING:
    from redlat.config import EngineSettings
    from redlat.models.causal_lm import LoadedLM


def bundled_dpg_prompt() -> str:
    return resources.files("redlat.prompts").joinpath("dpg.txt").read_text(encoding="utf-8")


def load_dialogue_prompt(prompt_file: str | None) -> str:
    """The DPG prompt (or the user's file), without trailing newlines; a clear error if unreadable or empty."""
    if prompt_file is None:
        return bundled_dpg_prompt().rstrip("\n")
    path = Path(prompt_file)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the prompt file {path}: {exc}") from exc
    if not text.strip():
        raise ConfigError(f"the prompt file {path} is empty")
    return text.rstrip("\n")


def resolve_format(requested: str, has_chat_template: bool, target_name: str) -> str:
    if requested == "auto":
        return "chat" if has_chat_template else "dpg"
    if requested == "chat" and not has_chat_template:
        raise ConfigError(
            f"--chat-format chat asked for, but the target {target_name!r} has no chat template; "
            "use --chat-format dpg (the DPG prompt) or auto"
        )
    return requested


# End-of-turn markers of common chat templates, cut at when a template writes them as plain text (a tokenizer that
# does not know them as special tokens decodes them like any other text).
END_OF_TURN_MARKERS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|im_start|>", "</s>")


class Chatbot:
    """Puts test cases to a target LM and returns its replies."""

    def __init__(
        self, lm: LoadedLM, chat: ChatbotConfig, generation: TargetGeneration, engine: EngineSettings | None = None
    ) -> None:
        self.lm = lm
        self.config = chat
        self.format = resolve_format(chat.format, lm.has_chat_template, lm.name)
        self.dialogue_prompt = load_dialogue_prompt(chat.prompt_file) if self.format == "dpg" else None
        self.settings = SamplingSettings(
            top_p=generation.top_p,
            temperature=generation.temperature,
            max_new_tokens=generation.max_new_tokens,
            stop_at_newline=self.format == "dpg",
        )
        self.sampler = make_sampler(lm, self.settings, batch_size=generation.batch_size, engine=engine)

    def model_input(self, test_case: str, history: Sequence[Sequence[str]] = ()) -> str:
        """The target's input for `test_case`, after the earlier (user turn, reply) pairs of its conversation."""
        system = self.config.system
        if self.format == "chat":
            messages = [{"role": "system", "content": system}] if system is not None else []
            for said, answered in history:
                messages += [{"role": "user", "content": said}, {"role": "assistant", "content": answered}]
            messages.append({"role": "user", "content": test_case})
            return self.lm.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        user, bot = self.config.user_label, self.config.bot_label
        before = f"{system}\n\n" if system is not None else ""
        earlier = "".join(f"\n{user}: {said}\n{bot}: {answered}" for said, answered in history)
        return f"{before}{self.dialogue_prompt}{earlier}\n{user}: {test_case}\n{bot}:"

    def extract_reply(self, raw: str) -> str:
        """DPG: cut at the next newline or user turn. Chat: cut at the first end-of-turn marker. Then strip."""
        if self.format == "dpg":
            reply = raw.split("\n", 1)[0]
            return reply.split(f"{self.config.user_label}:", 1)[0].strip()
        markers = [m for m in (*END_OF_TURN_MARKERS, self.lm.tokenizer.eos_token) if m]
        cut = min((i for i in (raw.find(m) for m in markers) if i >= 0), default=len(raw))
        return raw[:cut].strip()

    def reply(
        self, test_cases: Sequence[str], *, seed: int, histories: Sequence[Sequence[Sequence[str]]] | None = None
    ) -> list[str]:
        """Replies to the test cases; `histories` gives each one's conversation so far (a dialogue method's)."""
        histories = histories if histories is not None else [()] * len(test_cases)
        inputs = [self.model_input(case, history) for case, history in zip(test_cases, histories, strict=True)]
        # A chat template already holds the special tokens; a DPG prompt gets the tokenizer's usual ones.
        raw = self.sampler.sample(inputs, seed=seed, add_special_tokens=self.format == "dpg")
        return [self.extract_reply(text) for text in raw]
