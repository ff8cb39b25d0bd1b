"""Reading a Hugging Face `config.json`: each value checked, errors naming the key and the file."""

from keras_llm._checks import check_int, is_finite_real


class ConfigReader:
    """Typed access to a `config.json` dict; `where` (its path) starts every error."""

    def __init__(self, config, where):
        self.config = config
        self.where = where

    def _get(self, key, default):
        if key not in self.config and default is None:
            raise ValueError(
                f"{self.where}: `{key}` is missing; keras_llm needs it to build the model."
            )
        return self.config.get(key, default)

    def size(self, key, default=None):
        """A positive int; `default` is Hugging Face's where the key may be left out."""
        return check_int(key, self._get(key, default), where=self.where)

    def rate(self, key, default):
        """A dropout probability in [0, 1)."""
        value = self._get(key, default)
        if not is_finite_real(value) or not 0.0 <= value < 1.0:
            raise ValueError(
                f"{self.where}: `{key}` must be a float in [0, 1). Received: {key}={value!r}"
            )
        return float(value)

    def epsilon(self, key, default):
        """A positive float."""
        value = self._get(key, default)
        if not is_finite_real(value) or value <= 0.0:
            raise ValueError(
                f"{self.where}: `{key}` must be a positive float. Received: {key}={value!r}"
            )
        return float(value)

    def expect(self, key, supported, default, why):
        """Refuses a setting whose math the builders lack, rather than load different math."""
        value = self.config.get(key, default)
        if value not in supported:
            raise ValueError(
                f"{self.where}: {key}={value!r} is not supported: {why}. "
                f"Supported: {', '.join(repr(v) for v in supported)}."
            )
        return value

    def divisible(self, width_key, heads_key):
        width, heads = self.size(width_key), self.size(heads_key)
        if width % heads:
            raise ValueError(
                f"{self.where}: `{width_key}` must be divisible by `{heads_key}`. "
                f"Received: {width_key}={width}, {heads_key}={heads}"
            )
