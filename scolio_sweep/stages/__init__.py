"""The driver stages, in order: prepare -> run -> confirm -> answer -> finish."""
