package org.vitpalette.bench.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.Test;

public class JsonTest {
    private static String errorOf(String text) {
        try {
            Json.parse(text);
        } catch (JsonException e) {
            return e.getMessage();
        }
        fail("expected a JsonException for: " + text);
        return null;
    }

    @Test
    public void parsesAllValueTypes() throws Exception {
        Map<String, Object> m = Json.parseObject(
                "{\"s\": \"a\\\"b\\\\c\\n\\u00e9\\ud83d\\ude00\", \"i\": -12, \"d\": 1.5e3, \"t\": true,"
                        + " \"f\": false, \"n\": null, \"a\": [1, [], {}], \"big\": 123456789012345678901}");
        assertEquals("a\"b\\c\n\u00e9\ud83d\ude00", m.get("s"));
        assertEquals(Long.valueOf(-12), m.get("i"));
        assertEquals(1500.0, (Double) m.get("d"), 0);
        assertEquals(Boolean.TRUE, m.get("t"));
        assertEquals(Boolean.FALSE, m.get("f"));
        assertTrue(m.containsKey("n"));
        assertNull(m.get("n"));
        assertEquals(3, ((List<?>) m.get("a")).size());
        assertTrue(m.get("big") instanceof Double);
        assertEquals(Arrays.asList("s", "i", "d", "t", "f", "n", "a", "big"), new ArrayList<String>(m.keySet()));
    }

    @Test
    public void rejectsWhatRfc8259Forbids() {
        assertTrue(errorOf("{\"a\": 1,}").contains("trailing comma"));
        assertTrue(errorOf("[1, 2,]").contains("trailing comma"));
        assertTrue(errorOf("{\"a\": 01}").contains("leading zeros"));
        assertTrue(errorOf("{\"a\": 1, \"a\": 2}").contains("duplicate key \"a\""));
        assertTrue(errorOf("// c\n{}").contains("comments"));
        assertTrue(errorOf("{'a': 1}").contains("double quotes"));
        assertTrue(errorOf("{\"a\": NaN}").contains("expected a value"));
        assertTrue(errorOf("{\"a\": \"x\ty\"}").contains("control character"));
        assertTrue(errorOf("{} {}").contains("after the end"));
        assertTrue(errorOf("{\"a\": \"abc").contains("unterminated string"));
        assertTrue(errorOf("{\"a\": 1.}").contains("digit after '.'"));
        assertTrue(errorOf("{\"a\": -}").contains("digit after '-'"));
        assertTrue(errorOf("{\"a\": 1e}").contains("exponent"));
        assertTrue(errorOf("{\"a\": \"\\x\"}").contains("invalid escape"));
        assertTrue(errorOf("{\"a\": \"\\u12\"}").contains("\\u"));
        assertTrue(errorOf("").contains("end of input"));
        assertTrue(errorOf("{\"a\" 1}").contains("expected ':'"));
        assertTrue(errorOf("[1 2]").contains("expected ',' or ']'"));
        assertTrue(errorOf("tru").contains("expected a value"));
        assertTrue(errorOf("1e999").contains("out of range"));
    }

    @Test
    public void errorsNameLineAndColumn() {
        try {
            Json.parse("{\n  \"a\": 1,\n  \"b\": x\n}");
            fail();
        } catch (JsonException e) {
            assertEquals(3, e.line());
            assertEquals(8, e.column());
            assertTrue(e.getMessage(), e.getMessage().startsWith("line 3, column 8:"));
        }
    }

    @Test
    public void deepNestingIsAnErrorNotAStackOverflow() {
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < 100000; i++) {
            sb.append('[');
        }
        assertTrue(errorOf(sb.toString()).contains("nesting deeper"));
    }

    @Test
    public void topLevelMustBeAnObjectForParseObject() {
        try {
            Json.parseObject("[1]");
            fail();
        } catch (JsonException e) {
            assertTrue(e.getMessage().contains("found array"));
        }
    }

    @Test
    public void writeThenParseGivesTheSameValue() throws Exception {
        Map<String, Object> m = new LinkedHashMap<String, Object>();
        m.put("text", "quote\" backslash\\ newline\n tab\t ctrl\u0001 sep\u2028 emoji\ud83d\ude00 lone\ud800");
        m.put("int", 42L);
        m.put("neg", -7);
        m.put("dbl", 0.1);
        m.put("tiny", 1e-300);
        m.put("whole", 12.0);
        m.put("negzero", -0.0);
        m.put("nil", null);
        m.put("list", Arrays.asList(1L, "two", null, true));
        m.put("arr", new double[] {1.5, 2.5});
        m.put("empty", new LinkedHashMap<String, Object>());
        for (String text : new String[] {Json.write(m), Json.writePretty(m)}) {
            Map<String, Object> back = Json.parseObject(text);
            assertEquals(m.get("text"), back.get("text"));
            assertEquals(42L, back.get("int"));
            assertEquals(-7L, back.get("neg"));
            assertEquals(0.1, (Double) back.get("dbl"), 0);
            assertEquals(1e-300, (Double) back.get("tiny"), 0);
            assertEquals(12.0, (Double) back.get("whole"), 0);
            assertTrue(back.containsKey("nil"));
            assertEquals(Arrays.asList(1L, "two", null, true), back.get("list"));
            assertEquals(Arrays.asList(1.5, 2.5), back.get("arr"));
            assertEquals(new LinkedHashMap<String, Object>(), back.get("empty"));
        }
        assertTrue(Json.write(m).contains("\\u2028"));
        assertTrue(Json.write(m).contains("\\u0001"));
    }

    @Test
    public void writerRefusesNonFiniteNumbersAndOddTypes() {
        for (Object bad : new Object[] {Double.NaN, Double.POSITIVE_INFINITY, Float.NaN, new Object()}) {
            try {
                Json.write(Arrays.asList(bad));
                fail("wrote " + bad);
            } catch (IllegalArgumentException e) {
                assertTrue(e.getMessage().length() > 0);
            }
        }
    }
}
