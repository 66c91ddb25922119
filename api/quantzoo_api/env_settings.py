"""Settings read from environment variables (pydantic-settings), shared by the engine and the safety service.

    class Settings(EnvSettings):
        port: int = setting("SAFETY_PORT", 8888, gt=0)

    Settings.from_variables(os.environ)   # {"port": "9999"}: what the environment sets, by field name
    Settings(port=9999)                   # keyword construction never reads the process environment

Each field names its variable (`validation_alias`); pydantic-settings' environment source reads them from
a given mapping (os.environ, or a test's dict), so explicit arguments can still win over it and tests
never see the machine's environment. `VAR=` (empty) means unset. `explain` words a ValidationError with
the variable's name, which is what a person can act on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict


def setting(name: str, default: Any = ..., **constraints: Any) -> Any:
    """A setting read from the environment variable `name`."""
    return Field(default, validation_alias=name, **constraints)


class _MappingEnv(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping."""

    def __init__(self, settings_cls: type[BaseSettings], variables: Mapping[str, str]) -> None:
        self._mapping = {k: v for k, v in variables.items() if v != ""}
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return self._mapping


class EnvSettings(BaseSettings):
    model_config = SettingsConfigDict(
        frozen=True, case_sensitive=True, populate_by_name=True, extra="ignore", arbitrary_types_allowed=True
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)  # the environment only through from_variables (an explicit mapping)

    @classmethod
    def variable_names(cls) -> dict[str, str]:
        """Field name -> its environment variable."""
        return {
            name: f.validation_alias
            for name, f in cls.model_fields.items()
            if isinstance(f.validation_alias, str)
        }

    @classmethod
    def from_variables(cls, variables: Mapping[str, str]) -> dict[str, Any]:
        """What `variables` sets, by field name (raw values: validation happens on construction)."""
        fields = {var: name for name, var in cls.variable_names().items()}
        return {fields.get(k, k): v for k, v in _MappingEnv(cls, variables)().items()}

    @classmethod
    def explain(cls, exc: ValidationError) -> str:
        """The first errors, each with where it is: `VARIABLE (field)` for a setting, else its path."""
        names = cls.variable_names()
        parts = []
        for err in exc.errors()[:5]:
            where = ".".join(str(p) for p in err["loc"]) or "spec"
            if where in names:
                where = f"{names[where]} ({where})"
            parts.append(f"{where}: {err['msg']}")
        return "; ".join(parts)
