// Command interop checks threads.v1 through Go stubs generated from protos/ by
// protoc-gen-go and protoc-gen-go-grpc, against the live server at $THREADS_TARGET
// (host:port, plaintext): Create, Append, Copy, GetHistory, Watch (a server stream),
// Search, Count and their errors. It prints each check and exits 1 on the first failure,
// after deleting the threads it created. run.sh generates the stubs and runs it.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/google/uuid"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	threadsv1 "threads/gen/threadsv1"
)

const (
	callTimeout = 10 * time.Second // deadline of every RPC
	errorDomain = "threads.v1"     // ErrorInfo.domain of the service's errors
	pageSize    = 3                // GetHistory page size, small enough to need several pages
	created     = 7                // entries the thread is created with
	appended    = 5                // entries appended afterwards
	forkAt      = 5                // history_length of the partial copy
	searched    = 5                // threads created for Search and Count (plus one copy)
	searchPage  = 2                // Search page size, small enough to need several pages
)

func main() {
	target := os.Getenv("THREADS_TARGET")
	if target == "" {
		fmt.Fprintln(os.Stderr, "FAIL: THREADS_TARGET is not set (host:port of a threads server)")
		os.Exit(2)
	}
	conn, err := grpc.NewClient(target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUnaryInterceptor(withDeadline))
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: dial %s: %v\n", target, err)
		os.Exit(2)
	}
	defer conn.Close()

	fmt.Printf("grpc-go %s against %s\n", grpc.Version, target)
	s := &session{client: threadsv1.NewThreadServiceClient(conn)}
	s.run()
	fmt.Println("all checks passed")
}

// withDeadline gives every unary call a callTimeout deadline.
func withDeadline(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn,
	invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	return invoker(ctx, method, req, reply, cc, opts...)
}

// session runs the checks and remembers the threads it created so it can delete them.
type session struct {
	client  threadsv1.ThreadServiceClient
	created []string
}

// check prints one check's outcome. A non-nil err fails it: the threads created so
// far are deleted and the program exits 1.
func (s *session) check(name string, err error) {
	if err == nil {
		fmt.Printf("ok    %s\n", name)
		return
	}
	fmt.Fprintf(os.Stderr, "FAIL  %s: %v\n", name, err)
	s.deleteCreated()
	os.Exit(1)
}

func (s *session) run() {
	ctx := context.Background()

	// 1. Create with metadata and an initial history.
	metadata := mustStruct(map[string]any{"title": "go interop", "lang": "go", "tags": []any{"a", "b"}})
	history := entries(0, created)
	createResp, err := s.client.Create(ctx, &threadsv1.CreateRequest{Metadata: metadata, History: history})
	s.check("Create", err)
	source := createResp.GetThread()
	s.created = append(s.created, source.GetThreadId())
	s.check("Create: server-generated thread_id is a UUID", isUUID(source.GetThreadId()))
	s.check("Create: history_length", equal(source.GetHistoryLength(), int64(created)))
	s.check("Create: metadata as sent", protoEqual(source.GetMetadata(), metadata))
	s.check("Create: copied_from empty", equal(source.GetCopiedFrom(), ""))

	// 2. Append, guarded by expected_length; a stale expected_length is refused.
	more := entries(created, appended)
	appendResp, err := s.client.Append(ctx, &threadsv1.AppendRequest{
		ThreadId: source.GetThreadId(), Entries: more, ExpectedLength: proto.Int64(created)})
	s.check("Append with expected_length", err)
	s.check("Append: history_length", equal(appendResp.GetHistoryLength(), int64(created+appended)))
	_, err = s.client.Append(ctx, &threadsv1.AppendRequest{
		ThreadId: source.GetThreadId(), Entries: more, ExpectedLength: proto.Int64(created)})
	s.check("Append with stale expected_length: ABORTED HISTORY_LENGTH_MISMATCH",
		rpcError(err, codes.Aborted, "HISTORY_LENGTH_MISMATCH"))
	history = append(history, more...)

	// 3. Copy whole, idempotently.
	copyReq := &threadsv1.CopyRequest{ThreadId: source.GetThreadId(), RequestId: uuid.NewString()}
	copyResp, err := s.client.Copy(ctx, copyReq)
	s.check("Copy", err)
	whole := copyResp.GetThread()
	s.created = append(s.created, whole.GetThreadId())
	s.check("Copy: new thread_id", notEqual(whole.GetThreadId(), source.GetThreadId()))
	s.check("Copy: thread_id is a UUID", isUUID(whole.GetThreadId()))
	s.check("Copy: copied_from is the source", equal(whole.GetCopiedFrom(), source.GetThreadId()))
	s.check("Copy: history_length", equal(whole.GetHistoryLength(), int64(created+appended)))
	s.check("Copy: source's metadata", protoEqual(whole.GetMetadata(), metadata))
	retryResp, err := s.client.Copy(ctx, copyReq)
	s.check("Copy retried with the same request_id", err)
	s.check("Copy retry: same copy", equal(retryResp.GetThread().GetThreadId(), whole.GetThreadId()))

	// 4. Copy the first forkAt entries only.
	forkResp, err := s.client.Copy(ctx, &threadsv1.CopyRequest{
		ThreadId: source.GetThreadId(), RequestId: uuid.NewString(), HistoryLength: proto.Int64(forkAt)})
	s.check("Copy with history_length", err)
	fork := forkResp.GetThread()
	s.created = append(s.created, fork.GetThreadId())
	s.check("Copy with history_length: new thread_id",
		errors.Join(notEqual(fork.GetThreadId(), source.GetThreadId()), notEqual(fork.GetThreadId(), whole.GetThreadId())))
	s.check("Copy with history_length: copied_from is the source", equal(fork.GetCopiedFrom(), source.GetThreadId()))
	s.check("Copy with history_length: history_length", equal(fork.GetHistoryLength(), int64(forkAt)))

	// 5. Histories, read page by page: the source holds what was sent, the copies
	// hold its prefix entry for entry (data, index and created_at).
	sourceHistory := s.readHistory(ctx, "source", source.GetThreadId())
	s.check("GetHistory source: entries as sent, indexed 0..n-1", sameData(sourceHistory, history))
	wholeHistory := s.readHistory(ctx, "copy", whole.GetThreadId())
	s.check("GetHistory copy: equals the source's history", sameEntries(wholeHistory, sourceHistory))
	forkHistory := s.readHistory(ctx, "partial copy", fork.GetThreadId())
	s.check("GetHistory partial copy: equals the source's first entries", sameEntries(forkHistory, sourceHistory[:forkAt]))

	// 6. and 7. Domain errors carry a google.rpc.ErrorInfo.
	_, err = s.client.Get(ctx, &threadsv1.GetRequest{ThreadId: uuid.NewString()})
	s.check("Get missing thread: NOT_FOUND THREAD_NOT_FOUND", rpcError(err, codes.NotFound, "THREAD_NOT_FOUND"))
	_, err = s.client.Get(ctx, &threadsv1.GetRequest{ThreadId: "not-a-uuid"})
	s.check("Get malformed id: INVALID_ARGUMENT INVALID_THREAD_ID", rpcError(err, codes.InvalidArgument, "INVALID_THREAD_ID"))

	// 8. Watch: the thread's entries from an index on, then each one appended.
	s.watchChecks(ctx)

	// 9. Search and Count over threads tagged with a run-unique id.
	tag, searchSource := s.searchChecks(ctx)

	// Clean up: delete what was created, and check it is gone.
	for len(s.created) > 0 {
		id := s.created[0]
		_, err := s.client.Delete(ctx, &threadsv1.DeleteRequest{ThreadId: id})
		s.check("Delete "+id, err)
		s.created = s.created[1:]
		_, err = s.client.Get(ctx, &threadsv1.GetRequest{ThreadId: id})
		s.check("Get deleted "+id+": NOT_FOUND", rpcError(err, codes.NotFound, "THREAD_NOT_FOUND"))
	}
	countResp, err := s.client.Count(ctx, &threadsv1.CountRequest{Metadata: tag})
	s.check("Count by the run's tag after the deletes", err)
	s.check("Count by the run's tag after the deletes: 0", equal(countResp.GetCount(), int64(0)))
	countResp, err = s.client.Count(ctx, &threadsv1.CountRequest{CopiedFrom: searchSource})
	s.check("Count copied_from after the deletes", err)
	s.check("Count copied_from after the deletes: 0", equal(countResp.GetCount(), int64(0)))
	searchResp, err := s.client.Search(ctx, &threadsv1.SearchRequest{Metadata: tag})
	s.check("Search by the run's tag after the deletes", err)
	s.check("Search by the run's tag after the deletes: no threads",
		sameIDs(searchResp.GetThreads(), nil))
}

// watchChecks watches a new thread of 2 entries from index 0, appends 3 entries once the
// stream is live, and checks the stream delivers all 5, in order, as GetHistory returns
// them; and that watching a missing thread fails with NOT_FOUND.
func (s *session) watchChecks(ctx context.Context) {
	createResp, err := s.client.Create(ctx, &threadsv1.CreateRequest{History: entries(0, 2)})
	s.check("Create the watched thread", err)
	threadID := createResp.GetThread().GetThreadId()
	s.created = append(s.created, threadID)

	wctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	stream, err := s.client.Watch(wctx, &threadsv1.WatchRequest{ThreadId: threadID, StartIndex: 0})
	s.check("Watch from index 0", err)
	var got []*threadsv1.Entry
	messages := 0
	for len(got) < 5 {
		resp, err := stream.Recv()
		s.check(fmt.Sprintf("Watch: message %d", messages+1), err)
		messages++
		got = append(got, resp.GetEntries()...)
		if messages == 1 { // the stream is live: what is appended now must come on it
			appendResp, err := s.client.Append(ctx, &threadsv1.AppendRequest{
				ThreadId: threadID, Entries: entries(2, 3)})
			s.check("Append 3 entries to the watched thread", err)
			s.check("Append: history_length 5", equal(appendResp.GetHistoryLength(), int64(5)))
		}
		if len(got) > 0 {
			s.check("Watch: history_length counts the message's entries",
				equal(resp.GetHistoryLength(), got[len(got)-1].GetIndex()+1))
		}
	}
	cancel()
	s.check("Watch: the 2 entries, then the 3 appended, indexes 0..4", sameData(got, entries(0, 5)))
	s.check("Watch: entries as GetHistory returns them",
		sameEntries(got, s.readHistory(ctx, "watched", threadID)))

	missing, err := s.client.Watch(ctx, &threadsv1.WatchRequest{ThreadId: uuid.NewString()})
	s.check("Watch a missing thread: call", err)
	_, err = missing.Recv()
	s.check("Watch a missing thread: NOT_FOUND THREAD_NOT_FOUND",
		rpcError(err, codes.NotFound, "THREAD_NOT_FOUND"))
}

// searchChecks creates `searched` threads tagged {"interop": <run id>} with distinct
// metadata, and a copy of the first, then finds them with Search and Count by metadata,
// ids and lineage. It returns the tag filter and the copied thread's id, for the checks
// after the deletes.
func (s *session) searchChecks(ctx context.Context) (*structpb.Struct, string) {
	runID := uuid.NewString()
	tag := mustStruct(map[string]any{"interop": runID})
	var tagged []*threadsv1.Thread // in creation order
	for i := range searched {
		resp, err := s.client.Create(ctx, &threadsv1.CreateRequest{
			Metadata: mustStruct(map[string]any{"interop": runID, "lang": "go", "n": i})})
		s.check(fmt.Sprintf("Create search thread %d", i), err)
		tagged = append(tagged, resp.GetThread())
		s.created = append(s.created, resp.GetThread().GetThreadId())
	}
	source := tagged[0]
	copyResp, err := s.client.Copy(ctx, &threadsv1.CopyRequest{
		ThreadId: source.GetThreadId(), RequestId: uuid.NewString(),
		Metadata: mustStruct(map[string]any{"copy": true})})
	s.check("Copy search thread 0", err)
	copied := copyResp.GetThread()
	s.created = append(s.created, copied.GetThreadId())
	s.check("Copy search thread 0: the source's metadata with the request's merged over it",
		protoEqual(copied.GetMetadata(),
			mustStruct(map[string]any{"interop": runID, "lang": "go", "n": 0, "copy": true})))
	tagged = append(tagged, copied)

	countResp, err := s.client.Count(ctx, &threadsv1.CountRequest{Metadata: tag})
	s.check("Count by the run's tag", err)
	s.check(fmt.Sprintf("Count by the run's tag: %d", len(tagged)),
		equal(countResp.GetCount(), int64(len(tagged))))

	found := s.searchAll(ctx, &threadsv1.SearchRequest{
		Metadata: tag, SortBy: threadsv1.SortBy_SORT_BY_CREATED_AT,
		SortOrder: threadsv1.SortOrder_SORT_ORDER_ASC})
	s.check(fmt.Sprintf("Search by the run's tag, created_at ascending, page_size %d: the %d threads in creation order",
		searchPage, len(tagged)), sameIDs(found, tagged))
	s.check("Search by the run's tag: the threads as Create and Copy returned them",
		sameThreads(found, tagged))

	searchResp, err := s.client.Search(ctx, &threadsv1.SearchRequest{
		Metadata: mustStruct(map[string]any{"interop": runID, "n": 3})})
	s.check("Search by the run's tag and n 3", err)
	s.check("Search by the run's tag and n 3: thread 3 only",
		sameIDs(searchResp.GetThreads(), tagged[3:4]))

	searchResp, err = s.client.Search(ctx, &threadsv1.SearchRequest{CopiedFrom: source.GetThreadId()})
	s.check("Search copied_from thread 0", err)
	s.check("Search copied_from thread 0: the copy only", sameIDs(searchResp.GetThreads(), []*threadsv1.Thread{copied}))
	countResp, err = s.client.Count(ctx, &threadsv1.CountRequest{CopiedFrom: source.GetThreadId()})
	s.check("Count copied_from thread 0", err)
	s.check("Count copied_from thread 0: 1", equal(countResp.GetCount(), int64(1)))

	searchResp, err = s.client.Search(ctx, &threadsv1.SearchRequest{
		ThreadIds: []string{tagged[1].GetThreadId(), tagged[3].GetThreadId()}})
	s.check("Search thread_ids of threads 1 and 3", err)
	s.check("Search thread_ids of threads 1 and 3: those two, newest first (the default order)",
		sameIDs(searchResp.GetThreads(), []*threadsv1.Thread{tagged[3], tagged[1]}))
	countResp, err = s.client.Count(ctx, &threadsv1.CountRequest{
		ThreadIds: []string{tagged[1].GetThreadId(), tagged[3].GetThreadId(), uuid.NewString()}})
	s.check("Count thread_ids of threads 1, 3 and a missing one", err)
	s.check("Count thread_ids of threads 1, 3 and a missing one: 2", equal(countResp.GetCount(), int64(2)))

	_, err = s.client.Search(ctx, &threadsv1.SearchRequest{Metadata: tag, PageSize: -1})
	s.check("Search with page_size -1: INVALID_ARGUMENT INVALID_PAGE_SIZE",
		rpcError(err, codes.InvalidArgument, "INVALID_PAGE_SIZE"))
	return tag, source.GetThreadId()
}

// searchAll runs a Search searchPage threads at a time, following next_page_token.
func (s *session) searchAll(ctx context.Context, req *threadsv1.SearchRequest) []*threadsv1.Thread {
	var all []*threadsv1.Thread
	req = proto.CloneOf(req)
	req.PageSize = searchPage
	for page := 1; ; page++ {
		resp, err := s.client.Search(ctx, req)
		s.check(fmt.Sprintf("Search page %d", page), err)
		if len(resp.GetThreads()) > searchPage {
			s.check(fmt.Sprintf("Search page %d size", page),
				fmt.Errorf("%d threads, page_size is %d", len(resp.GetThreads()), searchPage))
		}
		all = append(all, resp.GetThreads()...)
		req.PageToken = resp.GetNextPageToken()
		if req.PageToken == "" {
			return all
		}
		if page > 100 {
			s.check("Search ends", errors.New("more than 100 pages"))
		}
	}
}

// readHistory reads a thread's whole history pageSize entries at a time.
func (s *session) readHistory(ctx context.Context, what, threadID string) []*threadsv1.Entry {
	var all []*threadsv1.Entry
	token := ""
	for page := 1; ; page++ {
		resp, err := s.client.GetHistory(ctx, &threadsv1.GetHistoryRequest{
			ThreadId: threadID, PageSize: pageSize, PageToken: token})
		s.check(fmt.Sprintf("GetHistory %s page %d", what, page), err)
		if len(resp.GetEntries()) > pageSize {
			s.check(fmt.Sprintf("GetHistory %s page %d size", what, page),
				fmt.Errorf("%d entries, page_size is %d", len(resp.GetEntries()), pageSize))
		}
		all = append(all, resp.GetEntries()...)
		token = resp.GetNextPageToken()
		if token == "" {
			return all
		}
		if page > 1000 {
			s.check("GetHistory "+what+" ends", errors.New("more than 1000 pages"))
		}
	}
}

// deleteCreated deletes the threads created so far, reporting but not failing on errors.
func (s *session) deleteCreated() {
	for _, id := range s.created {
		if _, err := s.client.Delete(context.Background(), &threadsv1.DeleteRequest{ThreadId: id}); err != nil {
			fmt.Fprintf(os.Stderr, "cleanup: delete %s: %v\n", id, err)
		}
	}
	s.created = nil
}

// entries returns n history entries numbered from first, each with a nested Struct.
func entries(first, n int) []*threadsv1.Entry {
	out := make([]*threadsv1.Entry, n)
	for i := range out {
		k := first + i
		out[i] = &threadsv1.Entry{Data: mustStruct(map[string]any{
			"role":    []string{"user", "assistant"}[k%2],
			"text":    fmt.Sprintf("message %d", k),
			"seq":     k,
			"details": map[string]any{"even": k%2 == 0, "parts": []any{k, "x", nil}},
		})}
	}
	return out
}

func mustStruct(m map[string]any) *structpb.Struct {
	s, err := structpb.NewStruct(m)
	if err != nil {
		panic(err)
	}
	return s
}

func equal[T comparable](got, want T) error {
	if got != want {
		return fmt.Errorf("got %v, want %v", got, want)
	}
	return nil
}

func notEqual[T comparable](got, other T) error {
	if got == other {
		return fmt.Errorf("got %v, want anything else", got)
	}
	return nil
}

func protoEqual(got, want proto.Message) error {
	if !proto.Equal(got, want) {
		return fmt.Errorf("got %v, want %v", got, want)
	}
	return nil
}

func isUUID(id string) error {
	if _, err := uuid.Parse(id); err != nil {
		return fmt.Errorf("%q: %v", id, err)
	}
	return nil
}

// sameData checks that got holds want's data in order, with server-set indexes 0..n-1.
func sameData(got, want []*threadsv1.Entry) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d entries, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i].GetIndex() != int64(i) {
			return fmt.Errorf("entry %d: index %d", i, got[i].GetIndex())
		}
		if !proto.Equal(got[i].GetData(), want[i].GetData()) {
			return fmt.Errorf("entry %d: data %v, want %v", i, got[i].GetData(), want[i].GetData())
		}
		if got[i].GetCreatedAt() == nil {
			return fmt.Errorf("entry %d: no created_at", i)
		}
	}
	return nil
}

// sameEntries checks that got equals want entry for entry, in order.
func sameEntries(got, want []*threadsv1.Entry) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d entries, want %d", len(got), len(want))
	}
	for i := range got {
		if !proto.Equal(got[i], want[i]) {
			return fmt.Errorf("entry %d: got %v, want %v", i, got[i], want[i])
		}
	}
	return nil
}

// sameIDs checks that got names want's threads, in order, each once.
func sameIDs(got, want []*threadsv1.Thread) error {
	ids := func(threads []*threadsv1.Thread) []string {
		out := make([]string, len(threads))
		for i, t := range threads {
			out[i] = t.GetThreadId()
		}
		return out
	}
	if g, w := ids(got), ids(want); !slices.Equal(g, w) {
		return fmt.Errorf("thread ids %v, want %v", g, w)
	}
	return nil
}

// sameThreads checks that got equals want thread for thread, in order.
func sameThreads(got, want []*threadsv1.Thread) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d threads, want %d", len(got), len(want))
	}
	for i := range got {
		if !proto.Equal(got[i], want[i]) {
			return fmt.Errorf("thread %d: got %v, want %v", i, got[i], want[i])
		}
	}
	return nil
}

// rpcError checks that err is a gRPC status with the given code and a
// google.rpc.ErrorInfo of the service's domain with the given reason.
func rpcError(err error, code codes.Code, reason string) error {
	if err == nil {
		return fmt.Errorf("succeeded, want %v", code)
	}
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("not a gRPC status: %v", err)
	}
	if st.Code() != code {
		return fmt.Errorf("code %v (%q), want %v", st.Code(), st.Message(), code)
	}
	for _, detail := range st.Details() {
		if info, ok := detail.(*errdetails.ErrorInfo); ok {
			if info.GetReason() != reason || info.GetDomain() != errorDomain {
				return fmt.Errorf("ErrorInfo reason %q domain %q, want %q %q",
					info.GetReason(), info.GetDomain(), reason, errorDomain)
			}
			return nil
		}
	}
	return fmt.Errorf("%v (%q) has no google.rpc.ErrorInfo in its details %v", st.Code(), st.Message(), st.Details())
}
