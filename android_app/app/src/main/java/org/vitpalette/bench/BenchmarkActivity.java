package org.vitpalette.bench;

import android.app.Activity;
import android.content.Intent;
import android.os.Bundle;
import android.util.Log;
import android.view.WindowManager;
import android.widget.ScrollView;
import android.widget.TextView;
import java.nio.file.Paths;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.ThreadFactory;
import org.vitpalette.bench.core.CollectorClient;
import org.vitpalette.bench.core.JobRunner;

/**
 * Entry point: {@code am start -n org.vitpalette.bench/.BenchmarkActivity --es job <job.json path>}.
 *
 * <p>Thin on purpose: every parameter comes from the job file named in the intent, the work runs
 * on one background thread ({@link JobRunner} in :core decides everything and always writes a
 * result), and the screen is kept on while the activity is in front. Jobs that arrive while one
 * runs are queued. {@code --ez cancel true} asks the running job to stop (status cancelled).
 */
public class BenchmarkActivity extends Activity {
    public static final String EXTRA_JOB = "job";
    public static final String EXTRA_CANCEL = "cancel";
    static final String TAG = "VitPaletteBench";

    /** One worker for the whole process, so jobs never overlap and never run on the UI thread. */
    private static final ExecutorService WORKER = Executors.newSingleThreadExecutor(new ThreadFactory() {
        @Override
        public Thread newThread(Runnable r) {
            Thread t = new Thread(r, "benchmark-job");
            t.setUncaughtExceptionHandler(new Thread.UncaughtExceptionHandler() {
                @Override
                public void uncaughtException(Thread thread, Throwable e) {
                    // JobRunner.run never throws; this is the last line of defence for a bug here.
                    Log.e(TAG, "benchmark worker died", e);
                }
            });
            return t;
        }
    });
    private static volatile JobRunner current;

    private TextView statusView;

    @Override
    protected void onCreate(Bundle savedInstanceState) {
        super.onCreate(savedInstanceState);
        // The screen stays on while a job runs: screen-off changes CPU governors and power draw.
        getWindow().addFlags(WindowManager.LayoutParams.FLAG_KEEP_SCREEN_ON);
        statusView = new TextView(this);
        statusView.setPadding(32, 32, 32, 32);
        statusView.setTextIsSelectable(true);
        ScrollView scroll = new ScrollView(this);
        scroll.addView(statusView);
        setContentView(scroll);
        handle(getIntent());
    }

    @Override
    protected void onNewIntent(Intent intent) {
        super.onNewIntent(intent);
        setIntent(intent);
        handle(intent);
    }

    private void handle(Intent intent) {
        if (intent != null && intent.getBooleanExtra(EXTRA_CANCEL, false)) {
            JobRunner running = current;
            if (running != null) {
                running.cancel();
                show("cancel requested");
            } else {
                show("nothing to cancel");
            }
            return;
        }
        final String jobPath = intent == null ? null : intent.getStringExtra(EXTRA_JOB);
        if (jobPath == null) {
            // Opened from the launcher: there is no run to report on, so no result is written.
            show("ViT Palette Bench\n\nStart a job from the host:\n"
                    + "adb shell am start -n org.vitpalette.bench/.BenchmarkActivity --es job /data/local/tmp/.../job.json\n\n"
                    + "Results: " + new AndroidPlatform(getApplicationContext()).defaultResultsDir());
            return;
        }
        show("queued " + jobPath);
        final android.content.Context app = getApplicationContext();
        WORKER.execute(new Runnable() {
            @Override
            public void run() {
                runJob(app, jobPath);
            }
        });
    }

    private void runJob(android.content.Context app, String jobPath) {
        AndroidPlatform platform = new AndroidPlatform(app);
        JobRunner runner = new JobRunner(platform, new RuntimeModelLoader(), new BatteryPowerSampler(app, platform),
                new CollectorClient());
        current = runner;
        show("running " + jobPath);
        try {
            // An empty extra ("--es job ''") still gets an invalid_job result from the runner.
            JobRunner.Outcome outcome = runner.run(Paths.get(jobPath.isEmpty() ? "(empty job path)" : jobPath));
            StringBuilder sb = new StringBuilder();
            sb.append("status: ").append(outcome.status.wireName()).append('\n');
            sb.append("result: ").append(outcome.resultPath).append('\n');
            if (outcome.posted) {
                sb.append("posted to the collector\n");
            } else if (outcome.postError != null) {
                sb.append("not posted: ").append(outcome.postError).append('\n');
            }
            Object error = outcome.document == null ? null : outcome.document.get("error");
            if (error != null) {
                sb.append('\n').append(error);
            }
            show(sb.toString());
        } catch (Throwable t) {
            Log.e(TAG, "job runner failed outside its own error handling", t);
            show("internal error (a bug, please report it): " + t);
        } finally {
            current = null;
        }
    }

    private void show(final String text) {
        Log.i(TAG, text);
        runOnUiThread(new Runnable() {
            @Override
            public void run() {
                if (statusView != null) {
                    statusView.setText(text);
                }
            }
        });
    }
}
