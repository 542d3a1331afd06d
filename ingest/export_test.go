package ingest

// DecodeSlimPajamaLine decodes one SlimPajama line with the JSON reader
// ingest uses, for the benchmarks' bound (package ingest_test).
func DecodeSlimPajamaLine(line []byte) (text, set string, err error) {
	found := make([]span, 2)
	if err := scanJSONLine(line, jsonPaths{{"text"}, {"meta", "redpajama_set_name"}}, found); err != nil {
		return "", "", err
	}
	if !found[0].isString || !found[1].isString {
		return "", "", errNotObject
	}
	return decodeJSONString(line[found[0].start:found[0].end]), decodeJSONString(line[found[1].start:found[1].end]), nil
}
