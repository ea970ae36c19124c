package org.vitpalette.bench.core;

/** Opens the job's model file with the job's runtime settings (threads, delegate). */
public interface ModelLoader {
    /**
     * @throws Exception anything the runtime raises; the runner reports it as {@code load_failed}
     */
    ModelSession load(Job job) throws Exception;
}
