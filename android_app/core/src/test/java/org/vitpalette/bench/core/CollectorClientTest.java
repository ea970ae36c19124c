package org.vitpalette.bench.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpHandler;
import com.sun.net.httpserver.HttpServer;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.ConcurrentLinkedQueue;
import org.junit.After;
import org.junit.Test;

/** The client against a real HTTP server on loopback. */
public class CollectorClientTest {
    /** A scripted collector: answers with the given statuses in order, records every request. */
    static final class ScriptedCollector implements HttpHandler {
        final ConcurrentLinkedQueue<Integer> script = new ConcurrentLinkedQueue<Integer>();
        final List<String> bodies = Collections.synchronizedList(new ArrayList<String>());
        final List<String> auth = Collections.synchronizedList(new ArrayList<String>());
        final List<String> paths = Collections.synchronizedList(new ArrayList<String>());
        final HttpServer server;

        ScriptedCollector(Integer... statuses) throws IOException {
            Collections.addAll(script, statuses);
            server = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 0);
            server.createContext("/", this);
            server.start();
        }

        String base() {
            return "http://127.0.0.1:" + server.getAddress().getPort();
        }

        @Override
        public void handle(HttpExchange ex) throws IOException {
            ByteArrayOutputStream buf = new ByteArrayOutputStream();
            try (InputStream in = ex.getRequestBody()) {
                byte[] b = new byte[4096];
                int n;
                while ((n = in.read(b)) > 0) {
                    buf.write(b, 0, n);
                }
            }
            bodies.add(new String(buf.toByteArray(), StandardCharsets.UTF_8));
            auth.add(String.valueOf(ex.getRequestHeaders().getFirst("Authorization")));
            paths.add(ex.getRequestMethod() + " " + ex.getRequestURI().getPath());
            Integer status = script.poll();
            if (status == null) {
                status = 599; // the test sent more requests than it scripted
            }
            byte[] reply = ("{\"status\": " + status + "}").getBytes(StandardCharsets.UTF_8);
            ex.sendResponseHeaders(status, reply.length);
            try (OutputStream out = ex.getResponseBody()) {
                out.write(reply);
            }
        }

        void assertScriptUsed() {
            assertTrue("scripted answers left unused: " + script, script.isEmpty());
        }
    }

    private final List<Long> sleeps = Collections.synchronizedList(new ArrayList<Long>());
    private ScriptedCollector collector;

    private CollectorClient client(int attempts) {
        return new CollectorClient(attempts, 10, 40, 2000, 5000, new CollectorClient.Sleeper() {
            @Override
            public void sleep(long ms) throws InterruptedException {
                sleeps.add(ms);
                Thread.sleep(ms);
            }
        });
    }

    @After
    public void stop() {
        if (collector != null) {
            collector.server.stop(0);
        }
    }

    @Test
    public void retriesA503ThenSucceeds() throws Exception {
        collector = new ScriptedCollector(503, 201);
        CollectorClient.Response r = client(3).post(collector.base() + "/api/v1/results", "{\"run_id\": \"r1\"}",
                "tok");
        assertEquals(201, r.status);
        assertEquals(2, r.attempts);
        assertEquals(2, collector.bodies.size());
        assertEquals("{\"run_id\": \"r1\"}", collector.bodies.get(1));
        assertEquals("Bearer tok", collector.auth.get(0));
        assertEquals("POST /api/v1/results", collector.paths.get(0));
        assertEquals(Collections.singletonList(10L), sleeps);
        collector.assertScriptUsed();
    }

    @Test
    public void backoffDoublesUpToTheCap() throws Exception {
        collector = new ScriptedCollector(500, 502, 429, 503, 200);
        CollectorClient.Response r = client(5).post(collector.base() + "/x", "{}", null);
        assertEquals(5, r.attempts);
        assertEquals(java.util.Arrays.asList(10L, 20L, 40L, 40L), sleeps);
        assertEquals("null", collector.auth.get(0));
        collector.assertScriptUsed();
    }

    @Test
    public void aRefusalIsNotRetriedAndCarriesTheReply() throws Exception {
        collector = new ScriptedCollector(422);
        try {
            client(5).post(collector.base() + "/api/v1/results", "{}", "");
            fail();
        } catch (CollectorException e) {
            assertEquals(422, e.httpStatus());
            assertEquals(1, e.attempts());
            assertTrue(e.getMessage(), e.getMessage().contains("refused") && e.getMessage().contains("422"));
            assertTrue(e.getMessage(), e.getMessage().contains("{\"status\": 422}"));
            assertTrue(e.nextStep().contains("schema"));
        }
        assertEquals(1, collector.bodies.size());
        assertTrue(sleeps.isEmpty());
    }

    @Test
    public void givesUpAfterEveryAttemptWhenNobodyListens() throws Exception {
        int port;
        try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            port = s.getLocalPort();
        }
        try {
            client(3).post("http://127.0.0.1:" + port + "/api/v1/results", "{}", null);
            fail();
        } catch (CollectorException e) {
            assertEquals(-1, e.httpStatus());
            assertEquals(3, e.attempts());
            assertTrue(e.getMessage(), e.getMessage().contains("after 3 attempts"));
            assertTrue(e.nextStep().contains("stays on the phone"));
        }
        assertEquals(2, sleeps.size());
    }

    @Test
    public void rejectsBadUrlsAndSettings() throws Exception {
        try {
            client(1).post("ftp://127.0.0.1/x", "{}", null);
            fail();
        } catch (CollectorException e) {
            assertTrue(e.getMessage().contains("not http"));
        }
        try {
            new CollectorClient(0, 1, 1, 1, 1, null);
            fail();
        } catch (IllegalArgumentException e) {
            assertTrue(e.getMessage().contains("maxAttempts"));
        }
    }
}
