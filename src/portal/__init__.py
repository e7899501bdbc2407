"""The web portal: the Litestar app that `rcc serve` and `rcc portal` serve."""
