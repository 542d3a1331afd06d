package train

func llamaTable(cfg ModelConfig) []Param { return nil }
