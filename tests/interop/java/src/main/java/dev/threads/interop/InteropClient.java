package dev.threads.interop;

import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.ListValue;
import com.google.protobuf.Struct;
import com.google.protobuf.Value;
import com.google.rpc.ErrorInfo;
import dev.threads.v1.AppendRequest;
import dev.threads.v1.AppendResponse;
import dev.threads.v1.CopyRequest;
import dev.threads.v1.CountRequest;
import dev.threads.v1.CreateRequest;
import dev.threads.v1.DeleteRequest;
import dev.threads.v1.Entry;
import dev.threads.v1.GetHistoryRequest;
import dev.threads.v1.GetHistoryResponse;
import dev.threads.v1.GetRequest;
import dev.threads.v1.SearchRequest;
import dev.threads.v1.SearchResponse;
import dev.threads.v1.SortBy;
import dev.threads.v1.SortOrder;
import dev.threads.v1.Thread;
import dev.threads.v1.ThreadServiceGrpc;
import dev.threads.v1.WatchRequest;
import dev.threads.v1.WatchResponse;
import io.grpc.Context;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Objects;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;

/**
 * Java interop checks for threads.v1 against a live server at $THREADS_TARGET (host:port,
 * plaintext), using stubs generated from protos/ by Maven's protobuf plugin.
 *
 * <p>Prints one line per check and exits 1 on the first failure (after deleting what it
 * created). Any unexpected RPC error also fails the run.
 */
public final class InteropClient {
  private static final String DOMAIN = "threads.v1";
  private static final long DEADLINE_SECONDS = 10;
  private static final int SOURCE_ENTRIES = 7;
  private static final int APPENDED_ENTRIES = 5;
  private static final int TOTAL_ENTRIES = SOURCE_ENTRIES + APPENDED_ENTRIES;
  private static final int FORK_LENGTH = 5;
  private static final int PAGE_SIZE = 3;
  /** Threads created for Search and Count (plus one copy), and Search's page size. */
  private static final int SEARCHED = 5;
  private static final int SEARCH_PAGE_SIZE = 2;

  /** Thrown by {@link #check} on the first failed check. */
  private static final class CheckFailed extends RuntimeException {
    CheckFailed(String message) {
      super(message);
    }
  }

  private final ThreadServiceGrpc.ThreadServiceBlockingStub rawStub;
  private final List<String> created = new ArrayList<>();
  private int checks;

  private InteropClient(ManagedChannel channel) {
    this.rawStub = ThreadServiceGrpc.newBlockingStub(channel);
  }

  public static void main(String[] args) throws InterruptedException {
    String target = System.getenv("THREADS_TARGET");
    if (target == null || target.isBlank()) {
      System.err.println("java interop: THREADS_TARGET (host:port) is not set");
      System.exit(2);
    }
    System.out.println("java interop: target " + target);
    ManagedChannel channel = ManagedChannelBuilder.forTarget(target).usePlaintext().build();
    InteropClient client = new InteropClient(channel);
    int code = 0;
    try {
      client.run();
      System.out.printf("java interop: all %d checks passed%n", client.checks);
    } catch (CheckFailed e) {
      System.err.println("java interop: FAILED: " + e.getMessage());
      code = 1;
    } catch (StatusRuntimeException e) {
      System.err.println("java interop: FAILED: unexpected RPC error " + describe(e));
      code = 1;
    } finally {
      code = Math.max(code, client.cleanup());
      channel.shutdown();
      if (!channel.awaitTermination(5, TimeUnit.SECONDS)) {
        channel.shutdownNow();
      }
    }
    System.exit(code);
  }

  /** A stub with a fresh 10 s deadline: deadlines are absolute, so one per call. */
  private ThreadServiceGrpc.ThreadServiceBlockingStub stub() {
    return rawStub.withDeadlineAfter(DEADLINE_SECONDS, TimeUnit.SECONDS);
  }

  private void check(String what, boolean ok, Supplier<String> detail) {
    checks++;
    if (!ok) {
      throw new CheckFailed(what + ": " + detail.get());
    }
    System.out.println("  ok  " + what);
  }

  private void checkEqual(String what, Object expected, Object actual) {
    check(what, Objects.equals(expected, actual),
        () -> "expected <" + expected + "> but got <" + actual + ">");
  }

  private void run() {
    // 1. Create with metadata and an initial history.
    Struct metadata = struct("title", str("java interop"), "client", str("grpc-java"),
        "tags", list(str("interop"), str("java")), "priority", num(3));
    List<Entry> initial = new ArrayList<>();
    for (int i = 0; i < SOURCE_ENTRIES; i++) {
      initial.add(entry(i));
    }
    Thread source = stub().create(CreateRequest.newBuilder()
        .setMetadata(metadata).addAllHistory(initial).build()).getThread();
    created.add(source.getThreadId());
    check("Create returns a UUID thread_id", isUuid(source.getThreadId()),
        () -> "got " + source.getThreadId());
    checkEqual("Create history_length", (long) SOURCE_ENTRIES, source.getHistoryLength());
    checkEqual("Create metadata round-trips", metadata, source.getMetadata());
    checkEqual("Create copied_from is empty", "", source.getCopiedFrom());
    Thread got = stub().get(GetRequest.newBuilder().setThreadId(source.getThreadId()).build())
        .getThread();
    checkEqual("Get returns the created thread", source.getThreadId(), got.getThreadId());
    checkEqual("Get history_length", (long) SOURCE_ENTRIES, got.getHistoryLength());

    // 2. Append with optimistic concurrency (expected_length).
    List<Entry> more = new ArrayList<>();
    for (int i = SOURCE_ENTRIES; i < TOTAL_ENTRIES; i++) {
      more.add(entry(i));
    }
    AppendResponse appended = stub().append(AppendRequest.newBuilder()
        .setThreadId(source.getThreadId()).addAllEntries(more)
        .setExpectedLength(SOURCE_ENTRIES).build());
    checkEqual("Append(expected_length=" + SOURCE_ENTRIES + ") history_length",
        (long) TOTAL_ENTRIES, appended.getHistoryLength());
    StatusRuntimeException stale = expectError(() -> stub().append(AppendRequest.newBuilder()
        .setThreadId(source.getThreadId()).addEntries(entry(99))
        .setExpectedLength(SOURCE_ENTRIES).build()));
    checkError("Append with stale expected_length", stale, Status.Code.ABORTED,
        "HISTORY_LENGTH_MISMATCH");
    List<Entry> sourceHistory = readHistory("source", source.getThreadId());
    checkEqual("source history length after append (stale append wrote nothing)",
        TOTAL_ENTRIES, sourceHistory.size());
    List<Entry> sent = new ArrayList<>();
    for (int i = 0; i < TOTAL_ENTRIES; i++) {
      sent.add(entry(i).toBuilder().setIndex(i).build());
    }
    checkSameEntries("source history is what was sent, indexed 0.." + (TOTAL_ENTRIES - 1),
        sent, sourceHistory, false);

    // 3. Whole copy, idempotent on request_id.
    CopyRequest copyRequest = CopyRequest.newBuilder().setThreadId(source.getThreadId())
        .setRequestId(UUID.randomUUID().toString()).build();
    Thread copy = stub().copy(copyRequest).getThread();
    created.add(copy.getThreadId());
    check("Copy has a new thread_id", isUuid(copy.getThreadId())
        && !copy.getThreadId().equals(source.getThreadId()), () -> "got " + copy.getThreadId());
    checkEqual("Copy copied_from", source.getThreadId(), copy.getCopiedFrom());
    checkEqual("Copy history_length", (long) TOTAL_ENTRIES, copy.getHistoryLength());
    checkEqual("Copy metadata equals the source's", metadata, copy.getMetadata());
    Thread retried = stub().copy(copyRequest).getThread();
    checkEqual("Copy retried with the same request_id returns the same copy",
        copy.getThreadId(), retried.getThreadId());

    // 4. Fork: copy only the first FORK_LENGTH entries, with metadata merged over the source's.
    Struct forkMetadata = struct("branch", str("fork"), "priority", num(7));
    Thread fork = stub().copy(CopyRequest.newBuilder().setThreadId(source.getThreadId())
        .setRequestId(UUID.randomUUID().toString()).setHistoryLength(FORK_LENGTH)
        .setMetadata(forkMetadata).build()).getThread();
    created.add(fork.getThreadId());
    check("Fork has a new thread_id", !fork.getThreadId().equals(source.getThreadId())
        && !fork.getThreadId().equals(copy.getThreadId()), () -> "got " + fork.getThreadId());
    checkEqual("Fork copied_from", source.getThreadId(), fork.getCopiedFrom());
    checkEqual("Fork history_length", (long) FORK_LENGTH, fork.getHistoryLength());
    checkEqual("Fork metadata is the source's with the request's merged over it",
        metadata.toBuilder().putAllFields(forkMetadata.getFieldsMap()).build(),
        fork.getMetadata());

    // 5. Each copy's history, page by page, equals the source's prefix.
    checkPrefix("copy", copy.getThreadId(), sourceHistory, TOTAL_ENTRIES);
    checkPrefix("fork", fork.getThreadId(), sourceHistory, FORK_LENGTH);

    // 6. NOT_FOUND with ErrorInfo for a missing thread.
    String missing = UUID.randomUUID().toString();
    checkError("Get on a missing thread",
        expectError(() -> stub().get(GetRequest.newBuilder().setThreadId(missing).build())),
        Status.Code.NOT_FOUND, "THREAD_NOT_FOUND");

    // 7. INVALID_ARGUMENT with ErrorInfo for a malformed id.
    checkError("Get with a malformed thread_id",
        expectError(() -> stub().get(GetRequest.newBuilder().setThreadId("not-a-uuid").build())),
        Status.Code.INVALID_ARGUMENT, "INVALID_THREAD_ID");

    // 8. Watch: the thread's entries from an index on, then each one appended.
    watchChecks();

    // 9. Search and Count over threads tagged with a run-unique id, and a copy of one.
    String runId = UUID.randomUUID().toString();
    Struct tag = struct("interop", str(runId));
    List<Thread> tagged = new ArrayList<>();
    for (int n = 0; n < SEARCHED; n++) {
      Thread thread = stub().create(CreateRequest.newBuilder()
          .setMetadata(struct("interop", str(runId), "lang", str("java"), "n", num(n))).build())
          .getThread();
      created.add(thread.getThreadId());
      tagged.add(thread);
    }
    Thread tagSource = tagged.get(0);
    Struct copyMetadata = struct("copy", Value.newBuilder().setBoolValue(true).build());
    Thread tagCopy = stub().copy(CopyRequest.newBuilder().setThreadId(tagSource.getThreadId())
        .setRequestId(UUID.randomUUID().toString()).setMetadata(copyMetadata).build())
        .getThread();
    created.add(tagCopy.getThreadId());
    checkEqual("Copy of a tagged thread has its metadata with the request's merged over it",
        tagSource.getMetadata().toBuilder().putAllFields(copyMetadata.getFieldsMap()).build(),
        tagCopy.getMetadata());
    tagged.add(tagCopy);

    checkEqual("Count by the run's tag", (long) tagged.size(),
        stub().count(CountRequest.newBuilder().setMetadata(tag).build()).getCount());
    List<Thread> found = searchAll("tagged", SearchRequest.newBuilder().setMetadata(tag)
        .setSortBy(SortBy.SORT_BY_CREATED_AT).setSortOrder(SortOrder.SORT_ORDER_ASC).build());
    checkEqual("Search by the run's tag, created_at ascending: the " + tagged.size()
        + " threads in creation order", ids(tagged), ids(found));
    checkEqual("Search by the run's tag returns the threads as created", tagged, found);
    checkEqual("Search by the run's tag and n 3: thread 3 only",
        ids(tagged.subList(3, 4)), ids(stub().search(SearchRequest.newBuilder()
            .setMetadata(struct("interop", str(runId), "n", num(3))).build()).getThreadsList()));
    checkEqual("Search copied_from a tagged thread: the copy only", ids(List.of(tagCopy)),
        ids(stub().search(SearchRequest.newBuilder().setCopiedFrom(tagSource.getThreadId())
            .build()).getThreadsList()));
    checkEqual("Count copied_from a tagged thread", 1L, stub().count(CountRequest.newBuilder()
        .setCopiedFrom(tagSource.getThreadId()).build()).getCount());
    List<String> two = List.of(tagged.get(1).getThreadId(), tagged.get(3).getThreadId());
    checkEqual("Search thread_ids of threads 1 and 3: those two, newest first (the default)",
        List.of(two.get(1), two.get(0)), ids(stub().search(SearchRequest.newBuilder()
            .addAllThreadIds(two).build()).getThreadsList()));
    checkEqual("Count thread_ids of threads 1, 3 and a missing one", 2L,
        stub().count(CountRequest.newBuilder().addAllThreadIds(two)
            .addThreadIds(UUID.randomUUID().toString()).build()).getCount());
    checkError("Search with page_size -1",
        expectError(() -> stub().search(SearchRequest.newBuilder().setMetadata(tag)
            .setPageSize(-1).build())),
        Status.Code.INVALID_ARGUMENT, "INVALID_PAGE_SIZE");

    // 10. Delete every thread made here: then nothing matches the tag or the lineage.
    int made = created.size();
    while (!created.isEmpty()) {
      stub().delete(DeleteRequest.newBuilder().setThreadId(created.get(0)).build());
      created.remove(0);
    }
    System.out.println("java interop: deleted " + made + " thread(s)");
    checkEqual("Count by the run's tag after the deletes", 0L,
        stub().count(CountRequest.newBuilder().setMetadata(tag).build()).getCount());
    checkEqual("Count copied_from after the deletes", 0L, stub().count(CountRequest.newBuilder()
        .setCopiedFrom(tagSource.getThreadId()).build()).getCount());
    checkEqual("Search by the run's tag after the deletes finds none", List.of(),
        stub().search(SearchRequest.newBuilder().setMetadata(tag).build()).getThreadsList());
  }

  /**
   * Watches a new thread of 2 entries from index 0 (a server stream, read as a blocking
   * iterator), appends 3 entries once the stream is live, and checks the stream delivers
   * all 5 in order, as GetHistory returns them; then that a missing thread is NOT_FOUND.
   */
  private void watchChecks() {
    Thread watched = stub().create(CreateRequest.newBuilder()
        .addHistory(entry(0)).addHistory(entry(1)).build()).getThread();
    String id = watched.getThreadId();
    created.add(id);
    List<Entry> got = new ArrayList<>();
    List<WatchResponse> messages = new ArrayList<>();
    // Cancelled once read: a watch never ends by itself.
    Context.CancellableContext watching = Context.current().withCancellation();
    try {
      watching.run(() -> {
        Iterator<WatchResponse> stream = stub().watch(
            WatchRequest.newBuilder().setThreadId(id).setStartIndex(0).build());
        while (got.size() < 5 && stream.hasNext()) {
          WatchResponse message = stream.next();
          messages.add(message);
          got.addAll(message.getEntriesList());
          if (messages.size() == 1) { // live: what is appended now must come on the stream
            AppendResponse appended = stub().append(AppendRequest.newBuilder().setThreadId(id)
                .addEntries(entry(2)).addEntries(entry(3)).addEntries(entry(4)).build());
            checkEqual("Append 3 entries to the watched thread: history_length", 5L,
                appended.getHistoryLength());
          }
        }
      });
    } finally {
      watching.cancel(null);
    }
    checkEqual("Watch from index 0 delivers the 2 entries, then the 3 appended", 5, got.size());
    checkSameEntries("Watch delivers them as GetHistory returns them (data, index, created_at)",
        readHistory("watched", id), got, true);
    checkEqual("Watch: the last message's history_length", 5L,
        messages.get(messages.size() - 1).getHistoryLength());
    checkError("Watch a missing thread",
        expectError(() -> stub().watch(WatchRequest.newBuilder()
            .setThreadId(UUID.randomUUID().toString()).build()).hasNext()),
        Status.Code.NOT_FOUND, "THREAD_NOT_FOUND");
  }

  /**
   * Runs a Search SEARCH_PAGE_SIZE threads at a time, following next_page_token until it is
   * empty; checks that no page is oversized or empty-but-not-last.
   */
  private List<Thread> searchAll(String label, SearchRequest request) {
    List<Thread> threads = new ArrayList<>();
    List<Integer> sizes = new ArrayList<>();
    String problem = null;
    String token = "";
    do {
      SearchResponse page = stub().search(request.toBuilder().setPageSize(SEARCH_PAGE_SIZE)
          .setPageToken(token).build());
      int size = page.getThreadsCount();
      sizes.add(size);
      token = page.getNextPageToken();
      if (problem == null && size > SEARCH_PAGE_SIZE) {
        problem = "page " + sizes.size() + " has " + size + " threads";
      } else if (problem == null && size == 0 && !token.isEmpty()) {
        problem = "page " + sizes.size() + " is empty but has a next_page_token";
      } else if (sizes.size() > 100) {
        problem = "more than 100 pages";
        break;
      }
      threads.addAll(page.getThreadsList());
    } while (!token.isEmpty());
    String why = problem;
    check(label + " Search(page_size=" + SEARCH_PAGE_SIZE + ") pages " + sizes, why == null,
        () -> why);
    return threads;
  }

  private static List<String> ids(List<Thread> threads) {
    return threads.stream().map(Thread::getThreadId).toList();
  }

  /**
   * Reads a thread's whole history PAGE_SIZE entries at a time, following next_page_token
   * until it is empty; checks that no page is oversized or empty-but-not-last.
   */
  private List<Entry> readHistory(String label, String threadId) {
    List<Entry> entries = new ArrayList<>();
    List<Integer> sizes = new ArrayList<>();
    String problem = null;
    String token = "";
    do {
      GetHistoryResponse page = stub().getHistory(GetHistoryRequest.newBuilder()
          .setThreadId(threadId).setPageSize(PAGE_SIZE).setPageToken(token).build());
      int size = page.getEntriesCount();
      sizes.add(size);
      token = page.getNextPageToken();
      if (problem == null && size > PAGE_SIZE) {
        problem = "page " + sizes.size() + " has " + size + " entries";
      } else if (problem == null && size == 0 && !token.isEmpty()) {
        problem = "page " + sizes.size() + " is empty but has a next_page_token";
      } else if (sizes.size() > 100) {
        problem = "more than 100 pages";
        break;
      }
      entries.addAll(page.getEntriesList());
    } while (!token.isEmpty());
    String why = problem;
    check(label + " GetHistory(page_size=" + PAGE_SIZE + ") pages " + sizes, why == null,
        () -> why);
    return entries;
  }

  /** Checks that the history of threadId equals the first `length` entries of source. */
  private void checkPrefix(String label, String threadId, List<Entry> source, int length) {
    List<Entry> history = readHistory(label, threadId);
    checkEqual(label + " history has " + length + " entries", length, history.size());
    checkSameEntries(label + " history equals the source's first " + length
        + " entries (data, index, created_at)", source.subList(0, length), history, true);
  }

  /** One check: same data and index (and created_at when asked), entry by entry, in order. */
  private void checkSameEntries(String what, List<Entry> want, List<Entry> have,
      boolean sameCreatedAt) {
    String mismatch = null;
    for (int i = 0; i < want.size() && mismatch == null; i++) {
      Entry w = want.get(i);
      Entry h = have.get(i);
      if (!w.getData().equals(h.getData())) {
        mismatch = "entry " + i + " data: expected <" + w.getData() + "> but got <" + h.getData()
            + ">";
      } else if (w.getIndex() != h.getIndex()) {
        mismatch = "entry " + i + " index: expected " + w.getIndex() + " but got " + h.getIndex();
      } else if (sameCreatedAt && !w.getCreatedAt().equals(h.getCreatedAt())) {
        mismatch = "entry " + i + " created_at: expected <" + w.getCreatedAt() + "> but got <"
            + h.getCreatedAt() + ">";
      }
    }
    String why = mismatch;
    check(what, why == null, () -> why);
  }

  private StatusRuntimeException expectError(Runnable call) {
    try {
      call.run();
    } catch (StatusRuntimeException e) {
      return e;
    }
    return null;
  }

  /** Checks the status code and the google.rpc.ErrorInfo (reason, domain) in the details. */
  private void checkError(String what, StatusRuntimeException error, Status.Code code,
      String reason) {
    check(what + " fails", error != null, () -> "the call succeeded");
    checkEqual(what + " -> " + code, code, error.getStatus().getCode());
    com.google.rpc.Status details = StatusProto.fromThrowable(error);
    check(what + " has status details", details != null,
        () -> "no grpc-status-details-bin in " + describe(error));
    ErrorInfo info = null;
    for (com.google.protobuf.Any any : details.getDetailsList()) {
      if (any.is(ErrorInfo.class)) {
        try {
          info = any.unpack(ErrorInfo.class);
        } catch (InvalidProtocolBufferException e) {
          throw new CheckFailed(what + ": ErrorInfo does not parse: " + e.getMessage());
        }
        break;
      }
    }
    ErrorInfo found = info;
    check(what + " has a google.rpc.ErrorInfo", found != null,
        () -> "details are " + details.getDetailsList());
    checkEqual(what + " ErrorInfo.reason", reason, found.getReason());
    checkEqual(what + " ErrorInfo.domain", DOMAIN, found.getDomain());
  }

  /** Deletes what the run created; returns 1 if a delete failed, else 0. */
  private int cleanup() {
    int code = 0;
    for (String id : created) {
      try {
        stub().delete(DeleteRequest.newBuilder().setThreadId(id).build());
      } catch (StatusRuntimeException e) {
        System.err.println("java interop: cleanup: Delete(" + id + ") failed: " + describe(e));
        code = 1;
      }
    }
    if (!created.isEmpty() && code == 0) {
      System.out.println("java interop: deleted " + created.size() + " thread(s)");
    }
    return code;
  }

  private static String describe(StatusRuntimeException e) {
    return e.getStatus().getCode() + ": " + e.getStatus().getDescription();
  }

  private static boolean isUuid(String s) {
    try {
      return UUID.fromString(s).toString().equals(s);
    } catch (IllegalArgumentException e) {
      return false;
    }
  }

  /** Entry i: a Struct with a number, strings, a bool, a null, a list and a nested struct. */
  private static Entry entry(int i) {
    return Entry.newBuilder().setData(struct(
        "n", num(i),
        "role", str(i % 2 == 0 ? "user" : "assistant"),
        "text", str("message " + i + " \u00e9\u00e8 \u2713"),
        "final", Value.newBuilder().setBoolValue(i == TOTAL_ENTRIES - 1).build(),
        "none", Value.newBuilder().setNullValueValue(0).build(),
        "list", list(num(i), num(i * 0.5), str("x")),
        "nested", Value.newBuilder().setStructValue(struct("depth", num(1))).build())).build();
  }

  private static Struct struct(Object... keysAndValues) {
    Struct.Builder b = Struct.newBuilder();
    for (int i = 0; i < keysAndValues.length; i += 2) {
      b.putFields((String) keysAndValues[i], (Value) keysAndValues[i + 1]);
    }
    return b.build();
  }

  private static Value str(String s) {
    return Value.newBuilder().setStringValue(s).build();
  }

  private static Value num(double d) {
    return Value.newBuilder().setNumberValue(d).build();
  }

  private static Value list(Value... values) {
    return Value.newBuilder().setListValue(ListValue.newBuilder().addAllValues(List.of(values)))
        .build();
  }
}
