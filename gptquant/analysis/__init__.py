"""Factor analysis (IC, quantile returns, turnover) of panel columns; reports come later."""
