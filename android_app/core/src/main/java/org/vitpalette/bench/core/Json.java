package org.vitpalette.bench.core;

import java.util.ArrayList;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A small strict JSON (RFC 8259) reader and writer with no dependencies.
 *
 * <p>Why our own: the core module must compile with plain {@code javac} on the host and run on
 * Android without third-party jars, and org.json on Android is lenient (it accepts single quotes,
 * trailing commas, NaN), which would let a broken job through on the phone but not on the host.
 *
 * <p>Reading maps JSON to plain Java values: object to {@link LinkedHashMap} (key order kept),
 * array to {@link ArrayList}, string to {@link String}, integer literal to {@link Long} (or
 * {@link Double} when it does not fit in a long), other numbers to {@link Double}, true/false to
 * {@link Boolean}, null to {@code null}. Duplicate keys, trailing commas, comments, NaN, leading
 * zeros, raw control characters in strings and trailing content are errors that name the line
 * and column.
 */
public final class Json {
    /** Nesting deeper than this is rejected instead of overflowing the stack. */
    public static final int MAX_DEPTH = 256;

    private Json() {
    }

    /** Parses one JSON document; the whole input must be one value (surrounding whitespace allowed). */
    public static Object parse(String text) throws JsonException {
        if (text == null) {
            throw new JsonException("no JSON text (null)");
        }
        Reader r = new Reader(text);
        r.skipWhitespace();
        if (r.pos == 0 && text.length() > 0 && text.charAt(0) == '\uFEFF') {
            throw r.error("a byte order mark before the JSON text; save the file as UTF-8 without BOM");
        }
        Object value = r.readValue(0);
        r.skipWhitespace();
        if (r.pos != text.length()) {
            throw r.error("unexpected " + r.describeHere() + " after the end of the JSON value");
        }
        return value;
    }

    /** Parses a document whose top level must be an object. */
    @SuppressWarnings("unchecked")
    public static Map<String, Object> parseObject(String text) throws JsonException {
        Object value = parse(text);
        if (!(value instanceof Map)) {
            throw new JsonException("expected a JSON object at the top level but found " + typeName(value));
        }
        return (Map<String, Object>) value;
    }

    /** A short JSON type name for messages: object, array, string, integer, number, boolean, null. */
    public static String typeName(Object value) {
        if (value == null) {
            return "null";
        }
        if (value instanceof Map) {
            return "object";
        }
        if (value instanceof List) {
            return "array";
        }
        if (value instanceof String) {
            return "string";
        }
        if (value instanceof Boolean) {
            return "boolean";
        }
        if (value instanceof Long || value instanceof Integer) {
            return "integer";
        }
        if (value instanceof Number) {
            return "number";
        }
        return value.getClass().getSimpleName();
    }

    /** Compact JSON text. */
    public static String write(Object value) {
        StringBuilder sb = new StringBuilder();
        writeValue(sb, value, -1, 0);
        return sb.toString();
    }

    /** Indented JSON text (two spaces), ending with a newline. */
    public static String writePretty(Object value) {
        StringBuilder sb = new StringBuilder();
        writeValue(sb, value, 2, 0);
        sb.append('\n');
        return sb.toString();
    }

    private static void newline(StringBuilder sb, int indent, int depth) {
        if (indent < 0) {
            return;
        }
        sb.append('\n');
        for (int i = 0; i < indent * depth; i++) {
            sb.append(' ');
        }
    }

    private static void writeValue(StringBuilder sb, Object value, int indent, int depth) {
        if (depth > MAX_DEPTH) {
            throw new IllegalArgumentException("value nested deeper than " + MAX_DEPTH + " levels (a cycle?)");
        }
        if (value == null) {
            sb.append("null");
        } else if (value instanceof String) {
            writeString(sb, (String) value);
        } else if (value instanceof Boolean) {
            sb.append(((Boolean) value).booleanValue() ? "true" : "false");
        } else if (value instanceof Double || value instanceof Float) {
            double d = ((Number) value).doubleValue();
            if (Double.isNaN(d) || Double.isInfinite(d)) {
                throw new IllegalArgumentException("JSON has no NaN or infinity (got " + d + "); write null instead");
            }
            sb.append(formatDouble(d));
        } else if (value instanceof Long || value instanceof Integer || value instanceof Short
                || value instanceof Byte) {
            sb.append(((Number) value).longValue());
        } else if (value instanceof Number) {
            // BigDecimal, BigInteger, AtomicLong...: their toString is valid JSON unless NaN-like.
            String s = value.toString();
            if (!s.matches("-?(0|[1-9][0-9]*)(\\.[0-9]+)?([eE][+-]?[0-9]+)?")) {
                throw new IllegalArgumentException("number " + s + " is not valid JSON");
            }
            sb.append(s);
        } else if (value instanceof Map) {
            Map<?, ?> map = (Map<?, ?>) value;
            sb.append('{');
            boolean first = true;
            for (Map.Entry<?, ?> e : map.entrySet()) {
                if (!(e.getKey() instanceof String)) {
                    throw new IllegalArgumentException("JSON object keys must be strings, got " + e.getKey());
                }
                if (!first) {
                    sb.append(',');
                }
                first = false;
                newline(sb, indent, depth + 1);
                writeString(sb, (String) e.getKey());
                sb.append(indent < 0 ? ":" : ": ");
                writeValue(sb, e.getValue(), indent, depth + 1);
            }
            if (!first) {
                newline(sb, indent, depth);
            }
            sb.append('}');
        } else if (value instanceof Collection) {
            sb.append('[');
            boolean first = true;
            for (Object item : (Collection<?>) value) {
                if (!first) {
                    sb.append(',');
                }
                first = false;
                newline(sb, indent, depth + 1);
                writeValue(sb, item, indent, depth + 1);
            }
            if (!first) {
                newline(sb, indent, depth);
            }
            sb.append(']');
        } else if (value instanceof double[]) {
            List<Object> list = new ArrayList<Object>();
            for (double d : (double[]) value) {
                list.add(d);
            }
            writeValue(sb, list, indent, depth);
        } else if (value instanceof long[]) {
            List<Object> list = new ArrayList<Object>();
            for (long l : (long[]) value) {
                list.add(l);
            }
            writeValue(sb, list, indent, depth);
        } else {
            throw new IllegalArgumentException("cannot write " + value.getClass().getName() + " as JSON");
        }
    }

    /** Shortest text that reads back to the same double; integral values keep a ".0". */
    static String formatDouble(double d) {
        if (d == 0.0) {
            return (1.0 / d < 0) ? "-0.0" : "0.0";
        }
        return Double.toString(d);
    }

    private static final char[] HEX = "0123456789abcdef".toCharArray();

    private static void writeString(StringBuilder sb, String s) {
        sb.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"':
                    sb.append("\\\"");
                    break;
                case '\\':
                    sb.append("\\\\");
                    break;
                case '\n':
                    sb.append("\\n");
                    break;
                case '\r':
                    sb.append("\\r");
                    break;
                case '\t':
                    sb.append("\\t");
                    break;
                case '\b':
                    sb.append("\\b");
                    break;
                case '\f':
                    sb.append("\\f");
                    break;
                default:
                    if (c < 0x20 || c == '\u2028' || c == '\u2029' || (c >= 0xD800 && c <= 0xDFFF
                            && !isPairedSurrogate(s, i))) {
                        sb.append("\\u").append(HEX[(c >> 12) & 0xF]).append(HEX[(c >> 8) & 0xF])
                                .append(HEX[(c >> 4) & 0xF]).append(HEX[c & 0xF]);
                    } else {
                        sb.append(c);
                    }
            }
        }
        sb.append('"');
    }

    private static boolean isPairedSurrogate(String s, int i) {
        char c = s.charAt(i);
        if (Character.isHighSurrogate(c)) {
            return i + 1 < s.length() && Character.isLowSurrogate(s.charAt(i + 1));
        }
        return i > 0 && Character.isHighSurrogate(s.charAt(i - 1));
    }

    /** Recursive-descent reader over one string. */
    private static final class Reader {
        final String s;
        int pos;

        Reader(String s) {
            this.s = s;
        }

        JsonException error(String what) {
            int line = 1;
            int col = 1;
            for (int i = 0; i < pos && i < s.length(); i++) {
                if (s.charAt(i) == '\n') {
                    line++;
                    col = 1;
                } else {
                    col++;
                }
            }
            return new JsonException("line " + line + ", column " + col + ": " + what, line, col);
        }

        String describeHere() {
            if (pos >= s.length()) {
                return "end of input";
            }
            char c = s.charAt(pos);
            if (c < 0x20 || c > 0x7e) {
                return String.format("character U+%04X", (int) c);
            }
            return "'" + c + "'";
        }

        void skipWhitespace() {
            while (pos < s.length()) {
                char c = s.charAt(pos);
                if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
                    pos++;
                } else {
                    break;
                }
            }
        }

        Object readValue(int depth) throws JsonException {
            if (depth > MAX_DEPTH) {
                throw error("nesting deeper than " + MAX_DEPTH + " levels");
            }
            skipWhitespace();
            if (pos >= s.length()) {
                throw error("expected a value but found end of input");
            }
            char c = s.charAt(pos);
            switch (c) {
                case '{':
                    return readObject(depth);
                case '[':
                    return readArray(depth);
                case '"':
                    return readString();
                case 't':
                    expectWord("true");
                    return Boolean.TRUE;
                case 'f':
                    expectWord("false");
                    return Boolean.FALSE;
                case 'n':
                    expectWord("null");
                    return null;
                default:
                    if (c == '-' || (c >= '0' && c <= '9')) {
                        return readNumber();
                    }
                    if (c == '/') {
                        throw error("comments are not allowed in JSON");
                    }
                    if (c == '\'') {
                        throw error("strings must use double quotes, found a single quote");
                    }
                    throw error("expected a value but found " + describeHere());
            }
        }

        void expectWord(String word) throws JsonException {
            if (!s.startsWith(word, pos)) {
                int end = pos;
                while (end < s.length() && Character.isLetterOrDigit(s.charAt(end)) && end - pos < 20) {
                    end++;
                }
                throw error("expected a value but found '" + s.substring(pos, Math.max(end, pos + 1)) + "'");
            }
            pos += word.length();
        }

        Map<String, Object> readObject(int depth) throws JsonException {
            Map<String, Object> map = new LinkedHashMap<String, Object>();
            pos++; // '{'
            skipWhitespace();
            if (pos < s.length() && s.charAt(pos) == '}') {
                pos++;
                return map;
            }
            while (true) {
                skipWhitespace();
                if (pos >= s.length() || s.charAt(pos) != '"') {
                    if (pos < s.length() && s.charAt(pos) == '}') {
                        throw error("trailing comma before '}'");
                    }
                    throw error("expected a string key in double quotes but found " + describeHere());
                }
                int keyPos = pos;
                String key = readString();
                if (map.containsKey(key)) {
                    pos = keyPos;
                    throw error("duplicate key \"" + key + "\"");
                }
                skipWhitespace();
                if (pos >= s.length() || s.charAt(pos) != ':') {
                    throw error("expected ':' after key \"" + key + "\" but found " + describeHere());
                }
                pos++;
                map.put(key, readValue(depth + 1));
                skipWhitespace();
                if (pos >= s.length()) {
                    throw error("unterminated object: expected ',' or '}' but found end of input");
                }
                char c = s.charAt(pos);
                if (c == ',') {
                    pos++;
                } else if (c == '}') {
                    pos++;
                    return map;
                } else {
                    throw error("expected ',' or '}' but found " + describeHere());
                }
            }
        }

        List<Object> readArray(int depth) throws JsonException {
            List<Object> list = new ArrayList<Object>();
            pos++; // '['
            skipWhitespace();
            if (pos < s.length() && s.charAt(pos) == ']') {
                pos++;
                return list;
            }
            while (true) {
                skipWhitespace();
                if (pos < s.length() && s.charAt(pos) == ']') {
                    throw error("trailing comma before ']'");
                }
                list.add(readValue(depth + 1));
                skipWhitespace();
                if (pos >= s.length()) {
                    throw error("unterminated array: expected ',' or ']' but found end of input");
                }
                char c = s.charAt(pos);
                if (c == ',') {
                    pos++;
                } else if (c == ']') {
                    pos++;
                    return list;
                } else {
                    throw error("expected ',' or ']' but found " + describeHere());
                }
            }
        }

        String readString() throws JsonException {
            int start = pos;
            pos++; // opening quote
            StringBuilder sb = new StringBuilder();
            while (true) {
                if (pos >= s.length()) {
                    pos = start;
                    throw error("unterminated string");
                }
                char c = s.charAt(pos);
                if (c == '"') {
                    pos++;
                    return sb.toString();
                }
                if (c < 0x20) {
                    throw error(String.format("raw control character U+%04X in a string; escape it", (int) c));
                }
                if (c != '\\') {
                    sb.append(c);
                    pos++;
                    continue;
                }
                pos++;
                if (pos >= s.length()) {
                    throw error("unterminated escape sequence");
                }
                char e = s.charAt(pos);
                switch (e) {
                    case '"':
                        sb.append('"');
                        break;
                    case '\\':
                        sb.append('\\');
                        break;
                    case '/':
                        sb.append('/');
                        break;
                    case 'b':
                        sb.append('\b');
                        break;
                    case 'f':
                        sb.append('\f');
                        break;
                    case 'n':
                        sb.append('\n');
                        break;
                    case 'r':
                        sb.append('\r');
                        break;
                    case 't':
                        sb.append('\t');
                        break;
                    case 'u':
                        if (pos + 4 >= s.length()) {
                            throw error("incomplete \\u escape");
                        }
                        int code = 0;
                        for (int i = 1; i <= 4; i++) {
                            int d = Character.digit(s.charAt(pos + i), 16);
                            if (d < 0) {
                                throw error("invalid \\u escape: expected 4 hex digits");
                            }
                            code = code * 16 + d;
                        }
                        sb.append((char) code);
                        pos += 4;
                        break;
                    default:
                        throw error("invalid escape \\" + e);
                }
                pos++;
            }
        }

        Number readNumber() throws JsonException {
            int start = pos;
            if (s.charAt(pos) == '-') {
                pos++;
            }
            if (pos >= s.length() || !isDigit(s.charAt(pos))) {
                throw error("invalid number: expected a digit after '-'");
            }
            if (s.charAt(pos) == '0') {
                pos++;
                if (pos < s.length() && isDigit(s.charAt(pos))) {
                    throw error("invalid number: leading zeros are not allowed");
                }
            } else {
                while (pos < s.length() && isDigit(s.charAt(pos))) {
                    pos++;
                }
            }
            boolean integral = true;
            if (pos < s.length() && s.charAt(pos) == '.') {
                integral = false;
                pos++;
                if (pos >= s.length() || !isDigit(s.charAt(pos))) {
                    throw error("invalid number: expected a digit after '.'");
                }
                while (pos < s.length() && isDigit(s.charAt(pos))) {
                    pos++;
                }
            }
            if (pos < s.length() && (s.charAt(pos) == 'e' || s.charAt(pos) == 'E')) {
                integral = false;
                pos++;
                if (pos < s.length() && (s.charAt(pos) == '+' || s.charAt(pos) == '-')) {
                    pos++;
                }
                if (pos >= s.length() || !isDigit(s.charAt(pos))) {
                    throw error("invalid number: expected a digit in the exponent");
                }
                while (pos < s.length() && isDigit(s.charAt(pos))) {
                    pos++;
                }
            }
            String text = s.substring(start, pos);
            if (integral) {
                try {
                    return Long.valueOf(text);
                } catch (NumberFormatException tooBig) {
                    return Double.valueOf(text);
                }
            }
            double d = Double.parseDouble(text);
            if (Double.isInfinite(d)) {
                pos = start;
                throw error("number " + text + " is out of range");
            }
            return d;
        }

        private static boolean isDigit(char c) {
            return c >= '0' && c <= '9';
        }
    }
}
