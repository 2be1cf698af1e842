//! Tests of `Journal`'s bookkeeping with no flusher and no files: batches settled in
//! order against a model, failures failing the later batches of their file, and `retire`
//! asking for the open file to be closed.

use proptest::prelude::*;

use super::*;

type Receiver = oneshot::Receiver<Result<(), NotDurable>>;

fn journal() -> Journal {
    // The flusher is not running: its wake-ups go nowhere.
    let (signal, _signals) = mpsc::channel(0);
    Journal::new(false, signal)
}

/// Appends a record and takes it as a batch of its own: its receiver and number.
fn batch(journal: &Journal) -> (Receiver, u64) {
    let receiver = journal.append(&Record::InboxDeleted { key: "a@x.test" }, None);
    let taken = journal.take().expect("a record was appended");
    (receiver, taken.number)
}

/// What the receiver has been told so far: None while it waits.
fn told(receiver: &mut Receiver) -> Option<Result<(), NotDurable>> {
    receiver.try_recv().expect("the journal keeps its senders")
}

#[test]
fn syncs_that_finish_out_of_order_are_acknowledged_in_order() {
    let journal = journal();
    let (mut first, first_number) = batch(&journal);
    let (mut second, second_number) = batch(&journal);
    journal.unsettled(first_number, 1, None);
    journal.unsettled(second_number, 1, None);
    journal.synced(second_number, Ok(()));
    assert_eq!((told(&mut first), told(&mut second)), (None, None));
    journal.synced(first_number, Ok(()));
    assert_eq!(told(&mut first), Some(Ok(())));
    assert_eq!(told(&mut second), Some(Ok(())));
    assert!(journal.take().is_none(), "nothing pending");
}

#[test]
fn a_failure_fails_the_later_batches_of_its_file_only() {
    let journal = journal();
    let mut batches: Vec<(Receiver, u64)> = (0..4).map(|_| batch(&journal)).collect();
    // Batches 0 and 1 in file 1, 2 in file 2; 1's sync fails after 2 was written.
    journal.unsettled(batches[0].1, 1, None);
    journal.unsettled(batches[1].1, 1, None);
    journal.unsettled(batches[2].1, 2, None);
    journal.synced(batches[1].1, Err(NotDurable));
    // Batch 3 is written to file 1 after the failure: it fails at once, in its turn.
    journal.unsettled(batches[3].1, 1, None);
    journal.synced(batches[2].1, Ok(()));
    assert!(batches.iter_mut().all(|(rx, _)| told(rx).is_none()));
    journal.synced(batches[0].1, Ok(()));
    let outcomes: Vec<_> = batches.iter_mut().map(|(rx, _)| told(rx)).collect();
    let failed = Some(Err(NotDurable));
    assert_eq!(outcomes, [Some(Ok(())), failed, Some(Ok(())), failed]);
    assert_eq!(journal.stats.commit_failures_total.get(), 2);
}

#[test]
fn barrier_with_nothing_pending_does_not_wait() {
    let journal = journal();
    let (mut receiver, number) = batch(&journal);
    journal.unsettled(number, 1, None);
    journal.synced(number, Ok(()));
    assert_eq!(told(&mut receiver), Some(Ok(())));
    // An empty take does not use up a batch number the barrier would wait for.
    assert!(journal.take().is_none());
    let barrier = journal.barrier();
    let outcome = futures_util::FutureExt::now_or_never(barrier);
    assert_eq!(outcome, Some(Ok(())));
}

#[test]
fn retire_asks_to_close_the_open_file_once_its_first_message_is_gone() {
    let journal = journal();
    let long_ago = Instant::now()
        .checked_sub(FILE_OPEN_MIN * 2)
        .expect("the clock is past boot by far");
    // No file open, or the first message still held: nothing asked.
    assert!(journal.retire(100).is_empty());
    journal.open_file_first_seq.set(Some((5, long_ago)));
    journal.retire(5);
    assert!(!journal.rotate_requested.get());
    // Gone, but the file is new: a tiny TTL must not churn files.
    journal.open_file_first_seq.set(Some((5, Instant::now())));
    journal.retire(6);
    assert!(!journal.rotate_requested.get());
    journal.open_file_first_seq.set(Some((5, long_ago)));
    journal.retire(6);
    assert!(journal.rotate_requested.get());
    // A batch records its smallest and largest seq for the flusher.
    drop(journal.append(&Record::InboxDeleted { key: "a@x.test" }, Some(9)));
    drop(journal.append(&Record::InboxDeleted { key: "a@x.test" }, Some(7)));
    let taken = journal.take().expect("appended");
    assert_eq!((taken.first_seq, taken.last_seq), (Some(7), 9));
}

/// One step of a flusher's life: write the next batch (to the current file, or to a
/// new one; the write may fail), or finish the sync of one batch in flight.
#[derive(Debug, Clone)]
enum Step {
    Write { new_file: bool, fails: bool },
    Sync { pick: usize, fails: bool },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (any::<bool>(), prop::bool::weighted(0.1))
            .prop_map(|(new_file, fails)| Step::Write { new_file, fails }),
        (any::<usize>(), prop::bool::weighted(0.15))
            .prop_map(|(pick, fails)| Step::Sync { pick, fails }),
    ]
}

proptest! {
    /// Against a model: acknowledgements come in batch order, and a batch is durable
    /// exactly when its own write and sync succeeded and every earlier batch of its
    /// file was durable; after all syncs finish, every batch has its answer.
    #[test]
    fn settling_matches_the_model(steps in prop::collection::vec(step(), 1..60)) {
        let journal = journal();
        let mut file_number = 1u64;
        // Per batch: its receiver, number, file and own outcome (None while syncing).
        let mut batches: Vec<(Receiver, u64, u64, Option<bool>)> = Vec::new();
        let mut told_so_far: Vec<Option<Result<(), NotDurable>>> = Vec::new();
        let mut in_flight: Vec<usize> = Vec::new();
        let check = |batches: &mut Vec<(Receiver, u64, u64, Option<bool>)>,
                     told_so_far: &mut Vec<Option<Result<(), NotDurable>>>| {
            for (idx, (receiver, _, _, _)) in batches.iter_mut().enumerate() {
                if told_so_far[idx].is_none() {
                    told_so_far[idx] = told(receiver);
                }
            }
            // A prefix has been told, and each told batch has finished its own steps.
            let n_told = told_so_far.iter().take_while(|outcome| outcome.is_some()).count();
            prop_assert!(told_so_far[n_told..].iter().all(Option::is_none));
            for idx in 0..n_told {
                let (_, _, file, own) = batches[idx];
                let earlier_failed = batches[..idx]
                    .iter()
                    .any(|batch| batch.2 == file && batch.3 == Some(false));
                // Told before its own sync finished only when already doomed.
                prop_assert!(own.is_some() || earlier_failed, "batch {} told too early", idx);
                let earlier_ok = batches[..idx]
                    .iter()
                    .filter(|batch| batch.2 == file)
                    .all(|batch| batch.3 == Some(true));
                let durable = own == Some(true) && earlier_ok;
                prop_assert_eq!(told_so_far[idx], Some(if durable { Ok(()) } else { Err(NotDurable) }));
            }
            Ok(())
        };
        for step in steps.into_iter().chain(std::iter::repeat_n(Step::Sync { pick: 0, fails: false }, 60)) {
            match step {
                Step::Write { new_file, fails } => {
                    // Writes may go on in a failed file (a write in progress when the
                    // failure was found): they must fail.
                    file_number += u64::from(new_file);
                    let (receiver, number) = batch(&journal);
                    if fails {
                        batches.push((receiver, number, file_number, Some(false)));
                        told_so_far.push(None);
                        journal.write_failed(number, file_number);
                    } else {
                        batches.push((receiver, number, file_number, None));
                        told_so_far.push(None);
                        in_flight.push(batches.len() - 1);
                        journal.unsettled(number, file_number, None);
                    }
                }
                Step::Sync { pick, fails } => {
                    if in_flight.is_empty() {
                        continue;
                    }
                    let idx = in_flight.swap_remove(pick % in_flight.len());
                    batches[idx].3 = Some(!fails);
                    let outcome = if fails { Err(NotDurable) } else { Ok(()) };
                    journal.synced(batches[idx].1, outcome);
                }
            }
            check(&mut batches, &mut told_so_far)?;
        }
        prop_assert!(in_flight.is_empty());
        prop_assert!(told_so_far.iter().all(Option::is_some));
    }
}
