package org.vitpalette.bench.core;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.HttpURLConnection;
import java.net.URL;
import java.nio.charset.StandardCharsets;

/**
 * POSTs a result document to the collector, retrying what may pass on a second try.
 *
 * <p>Retried: no answer (connection refused, reset, timeout), 5xx, 408 and 429, with exponential
 * backoff (initial delay doubled each time, capped). Not retried: other 4xx answers (the document
 * or token is wrong and will stay wrong), which raise at once with the collector's reply. The
 * result file on the phone is written before posting, so a collector that never answers loses
 * nothing: the host runner pulls the file.
 */
public final class CollectorClient {
    /** How the client waits between attempts; tests may pass a recording sleeper. */
    public interface Sleeper {
        void sleep(long ms) throws InterruptedException;
    }

    /** The collector's answer to a successful POST. */
    public static final class Response {
        public final int status;
        public final String body;
        public final int attempts;

        Response(int status, String body, int attempts) {
            this.status = status;
            this.body = body;
            this.attempts = attempts;
        }
    }

    private final int maxAttempts;
    private final long initialBackoffMs;
    private final long maxBackoffMs;
    private final int connectTimeoutMs;
    private final int readTimeoutMs;
    private final Sleeper sleeper;

    /** Defaults: 5 attempts, 500 ms doubling up to 8 s, 5 s connect and 30 s read timeouts. */
    public CollectorClient() {
        this(5, 500, 8000, 5000, 30000, new Sleeper() {
            @Override
            public void sleep(long ms) throws InterruptedException {
                Thread.sleep(ms);
            }
        });
    }

    public CollectorClient(int maxAttempts, long initialBackoffMs, long maxBackoffMs, int connectTimeoutMs,
            int readTimeoutMs, Sleeper sleeper) {
        if (maxAttempts < 1) {
            throw new IllegalArgumentException("maxAttempts must be >= 1, got " + maxAttempts);
        }
        if (initialBackoffMs < 0 || maxBackoffMs < initialBackoffMs) {
            throw new IllegalArgumentException("backoff must satisfy 0 <= initial <= max, got " + initialBackoffMs
                    + " and " + maxBackoffMs);
        }
        if (connectTimeoutMs < 1 || readTimeoutMs < 1) {
            throw new IllegalArgumentException("timeouts must be >= 1 ms");
        }
        if (sleeper == null) {
            throw new IllegalArgumentException("sleeper is required");
        }
        this.maxAttempts = maxAttempts;
        this.initialBackoffMs = initialBackoffMs;
        this.maxBackoffMs = maxBackoffMs;
        this.connectTimeoutMs = connectTimeoutMs;
        this.readTimeoutMs = readTimeoutMs;
        this.sleeper = sleeper;
    }

    /** Delay before attempt number {@code attempt + 1} (attempt counts from 1). */
    long backoffMs(int attempt) {
        double d = initialBackoffMs * Math.pow(2, attempt - 1);
        return (long) Math.min(d, maxBackoffMs);
    }

    static boolean retryable(int status) {
        return status >= 500 || status == 408 || status == 429;
    }

    /**
     * POSTs JSON to {@code endpoint} (the full URL, e.g. {@link Job#collectorResultsEndpoint()}).
     *
     * @param bearerToken sent as {@code Authorization: Bearer <token>} when not null/empty
     * @return the 2xx answer
     * @throws CollectorException when refused (4xx) or unreachable after every attempt
     */
    public Response post(String endpoint, String json, String bearerToken)
            throws CollectorException, InterruptedException {
        URL url;
        try {
            url = new URL(endpoint);
        } catch (IOException e) {
            throw new CollectorException("collector URL " + endpoint + " is not a valid URL", "fix collector_url in the job",
                    -1, 0, e);
        }
        if (!"http".equals(url.getProtocol()) && !"https".equals(url.getProtocol())) {
            throw new CollectorException("collector URL " + endpoint + " is not http(s)", "fix collector_url in the job",
                    -1, 0, null);
        }
        byte[] body = json.getBytes(StandardCharsets.UTF_8);
        int lastStatus = -1;
        String lastProblem = null;
        IOException lastError = null;
        for (int attempt = 1; attempt <= maxAttempts; attempt++) {
            HttpURLConnection conn = null;
            try {
                conn = (HttpURLConnection) url.openConnection();
                conn.setRequestMethod("POST");
                conn.setConnectTimeout(connectTimeoutMs);
                conn.setReadTimeout(readTimeoutMs);
                conn.setDoOutput(true);
                conn.setUseCaches(false);
                conn.setInstanceFollowRedirects(false);
                conn.setFixedLengthStreamingMode(body.length);
                conn.setRequestProperty("Content-Type", "application/json; charset=utf-8");
                conn.setRequestProperty("Accept", "application/json");
                if (bearerToken != null && !bearerToken.isEmpty()) {
                    conn.setRequestProperty("Authorization", "Bearer " + bearerToken);
                }
                try (OutputStream out = conn.getOutputStream()) {
                    out.write(body);
                }
                int status = conn.getResponseCode();
                String reply = readAll(status >= 400 ? conn.getErrorStream() : conn.getInputStream());
                lastStatus = status;
                if (status >= 200 && status < 300) {
                    return new Response(status, reply, attempt);
                }
                lastProblem = "HTTP " + status + ": " + abbreviate(reply);
                if (!retryable(status)) {
                    String next = status == 401 || status == 403 ? "check collector_token in the job"
                            : status == 422 || status == 400 ? "the result does not match the collector's schema;"
                                    + " compare the app and collector versions"
                                    : "check the collector URL and its log";
                    throw new CollectorException("collector " + endpoint + " refused the result: " + lastProblem,
                            next, status, attempt, null);
                }
            } catch (IOException e) {
                lastError = e;
                lastProblem = e.toString();
                lastStatus = -1;
            } finally {
                if (conn != null) {
                    conn.disconnect();
                }
            }
            if (attempt < maxAttempts) {
                sleeper.sleep(backoffMs(attempt));
            }
        }
        throw new CollectorException("collector " + endpoint + " did not take the result after " + maxAttempts
                + " attempts; last: " + lastProblem,
                "check that the collector runs and the phone can reach it; the result file stays on the phone",
                lastStatus, maxAttempts, lastError);
    }

    private static String abbreviate(String s) {
        if (s == null) {
            return "";
        }
        return s.length() > 500 ? s.substring(0, 500) + "..." : s;
    }

    private static String readAll(InputStream in) throws IOException {
        if (in == null) {
            return "";
        }
        try (InputStream is = in) {
            ByteArrayOutputStream buf = new ByteArrayOutputStream();
            byte[] chunk = new byte[8192];
            int n;
            while ((n = is.read(chunk)) > 0) {
                buf.write(chunk, 0, n);
                if (buf.size() > 1 << 20) {
                    break;
                }
            }
            return new String(buf.toByteArray(), StandardCharsets.UTF_8);
        }
    }
}
