package org.vitpalette.bench.core;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;

/**
 * Checks that the model file on the device is the one the job names (size, then sha256), so a
 * truncated or stale push is reported as load_failed instead of timing the wrong model.
 */
public final class ModelFileCheck {
    private ModelFileCheck() {
    }

    /** Lower-case hex sha256 of a file. */
    public static String sha256(Path file) throws IOException {
        MessageDigest md;
        try {
            md = MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("SHA-256 missing from this Java runtime", e);
        }
        try (InputStream in = Files.newInputStream(file)) {
            byte[] buf = new byte[1 << 16];
            int n;
            while ((n = in.read(buf)) > 0) {
                md.update(buf, 0, n);
            }
        }
        StringBuilder sb = new StringBuilder();
        for (byte b : md.digest()) {
            sb.append(String.format("%02x", b & 0xff));
        }
        return sb.toString();
    }

    /** Throws a BenchException naming the file and what differs; returns quietly when it matches. */
    public static void verify(Path file, long expectedBytes, String expectedSha256) throws BenchException {
        String push = "push the bundle again (the host runner checks sha256 after pushing)";
        if (!Files.isRegularFile(file)) {
            throw new BenchException("model file " + file + " does not exist on the device", push);
        }
        long size;
        String sha;
        try {
            size = Files.size(file);
            if (size != expectedBytes) {
                throw new BenchException("model file " + file + " has " + size + " bytes, the job expects "
                        + expectedBytes + " (truncated or a different model)", push);
            }
            sha = sha256(file);
        } catch (IOException e) {
            throw new BenchException("cannot read model file " + file + ": " + e, push, e);
        }
        if (!sha.equals(expectedSha256)) {
            throw new BenchException("model file " + file + " has sha256 " + sha + ", the job expects "
                    + expectedSha256, push);
        }
    }
}
