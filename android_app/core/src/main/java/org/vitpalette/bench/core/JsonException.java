package org.vitpalette.bench.core;

/** Malformed JSON text; the message starts with the line and column. */
public class JsonException extends BenchException {
    private static final long serialVersionUID = 1L;
    private final int line;
    private final int column;

    public JsonException(String message) {
        this(message, 0, 0);
    }

    public JsonException(String message, int line, int column) {
        super(message, "fix the JSON text (RFC 8259: double quotes, no comments, no trailing commas)");
        this.line = line;
        this.column = column;
    }

    /** 1-based line of the error, 0 when unknown. */
    public int line() {
        return line;
    }

    /** 1-based column of the error, 0 when unknown. */
    public int column() {
        return column;
    }
}
