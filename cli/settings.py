"""The whole config as the commands see it: ``[agent]`` parsed, every other section handed to its owner.

Every section other than ``[agent]`` (``[models]``, ``[detection]``,
``[console]``, ...) is kept as its raw table and parsed by the package that
owns it, when a command needs it, so one package's settings never break
another's command.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from agent.settings import AgentSettings
from audio.config import AudioConfig
from detection.config import DetectionConfig
from detection.detector import Detector
from kernel.config import ConfigError, ConfigFile, default_data_dir, load_config
from models.encoder import SentenceEncoder
from models.lookup import ModelsConfig, resolve_encoder, resolve_model


@dataclass(frozen=True)
class Settings:
    """The whole config as the agent commands see it.

    ``agent`` is parsed here; the other sections stay raw tables, parsed by
    their owners on demand (:meth:`detection_config`).
    ``data_dir`` is where models, the console store and recordings live.
    """

    agent: AgentSettings
    file: ConfigFile
    data_dir: Path

    def section(self, name: str) -> Mapping[str, Any]:
        return self.file.section(name)

    def resolve_model(self, option: str | None = None):
        """The speech model to use (``models.lookup`` order: ``option``, then
        ``$CALLSHIELD_MODEL``, ``[models] model``, the models directory); raises
        ``ModelNotFound`` naming the install command."""
        return resolve_model(option, self._models_config(), data_dir=self.data_dir)

    def encoder(self, name: str):
        """The sentence encoder ``name`` (an installed name or a folder), loaded:
        a ``models.encoder.SentenceEncoder``; a missing one is a one-line
        ``ModelNotFound`` saying how to install it."""
        return SentenceEncoder(resolve_encoder(name, self._models_config(), data_dir=self.data_dir).path)

    def _models_config(self):
        """``[models]``, paths relative to the config file's folder."""
        return ModelsConfig.from_section(self.section("models"), base=self.file.path.parent if self.file.path else None)

    def console_target(self, url: str | None, token: str | None) -> tuple[str, str]:
        """The console URL and this agent's token: the command line's, else the
        config's (``[agent] console_url``, ``token``/``token_file``,
        ``$CALLSHIELD_AGENT_TOKEN``); a missing one is a one-line error."""
        url = url or self.agent.console_url
        if not url:
            raise ConfigError("no console given: pass --console ws://HOST:PORT or set [agent] console_url", code="no_console")
        token = token or self.agent.resolved_token()
        if not token:
            raise ConfigError("no agent token: pass --token, set [agent] token_file, or $CALLSHIELD_AGENT_TOKEN", code="no_token")
        return url, token

    def end_call_webhook(self, env: Mapping[str, str] | None = None):
        """The ``[end_call_webhook]`` section as ``agent.end_call_webhook.EndCallWebhookSettings``,
        its secret resolved (a url without a readable, long enough secret is a one-line ``ConfigError``)."""
        from agent.end_call_webhook import EndCallWebhookSettings

        where = f"{self.file.path}: [end_call_webhook]" if self.file.path else "[end_call_webhook]"
        return EndCallWebhookSettings.from_section(self.section("end_call_webhook"), where=where, env=env)

    def audio_config(self):
        """The ``[audio]`` section as ``audio.config.AudioConfig`` (channel map, VAD, loudness window)."""
        return AudioConfig.from_section(self.section("audio"))

    def detection_config(self):
        """The ``[detection]`` section as ``detection.DetectionConfig``."""
        return DetectionConfig.from_table(self.section("detection"))

    def detector(self, config=None):
        """A ``detection.Detector`` for ``config`` (default: :meth:`detection_config`),
        with its semantic stage's sentence encoder looked up and loaded
        (``[detection] encoder``, in the models directory or a pip package).
        A missing encoder is a one-line ``ModelNotFound`` saying how to install it."""
        config = config if config is not None else self.detection_config()
        return Detector(config, encoder=self.encoder(config.encoder) if config.semantic else None)


def load_settings(path: str | os.PathLike | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read the config file (see :mod:`kernel.config`) and parse ``[agent]``."""
    env = os.environ if env is None else env
    file = load_config(path, env)
    where = f"{file.path}: [agent]" if file.path else "[agent]"
    agent = AgentSettings.from_table(file.section("agent"), where=where)
    return Settings(agent=agent, file=file, data_dir=default_data_dir(env))
