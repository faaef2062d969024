"""The service configuration: one frozen dataclass per section, read from YAML and the environment.

``load_config`` reads a file and ``config_from_dict`` a mapping. Both substitute ``${VAR}`` references,
apply ``MONITOR__SECTION__KEY`` overrides, then validate everything in one pass and raise one
``ConfigError`` that lists every problem with its dotted path. ``config/monitor.yaml`` documents each key.

>>> config = config_from_dict({"batch": {"max_records": 100}}, environ={})
>>> config.batch
BatchConfig(max_records=100, max_wait_ms=200)
>>> config_from_dict({"batch": {"max_record": 100}}, environ={})
Traceback (most recent call last):
...
monitor.errors.ConfigError: batch.max_record: unknown key; did you mean 'max_records'?
"""

from monitor.settings.environment import ENV_PREFIX
from monitor.settings.loading import config_from_dict, load_config
from monitor.settings.sections import (
                                       BatchConfig,
                                       CompareConfig,
                                       DeadLetterConfig,
                                       FormatConfig,
                                       InputConfig,
                                       KafkaConfig,
                                       LoggingConfig,
                                       MetricsConfig,
                                       ModelConfig,
                                       MonitorConfig,
                                       OutputConfig,
                                       PromotionConfig,
                                       ReloadConfig,
                                       RetrainConfig,
                                       ShutdownConfig,
                                       StateConfig,
                                       WindowConfig,
)

__all__ = ["ENV_PREFIX", "BatchConfig", "CompareConfig", "DeadLetterConfig", "FormatConfig", "InputConfig", "KafkaConfig",
           "LoggingConfig", "MetricsConfig", "ModelConfig", "MonitorConfig", "OutputConfig", "PromotionConfig",
           "ReloadConfig", "RetrainConfig", "ShutdownConfig", "StateConfig", "WindowConfig", "config_from_dict", "load_config"]
