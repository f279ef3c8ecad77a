import { expect } from "vitest";
import { DomainError, type DomainErrorCode } from "../../src/domain/errors.ts";
import type { SessionEvent, UserEvent } from "../../src/domain/events.ts";
import type { SessionCommand } from "../../src/domain/session-commands.ts";
import { decide } from "../../src/domain/session-decider.ts";
import { evolve, initialSessionState, type SessionState } from "../../src/domain/session-state.ts";
import {
  decideUser,
  evolveUser,
  initialUserState,
  type UserCommand,
  type UserState,
} from "../../src/domain/user-decider.ts";

/**
 * Given/when/then over a decider, in the style of Emmett's DeciderSpecification:
 *
 *   given([created]).when(renew).then([renewed])
 *   given([created, invalidated]).when(renew).thenThrows("session_ended")
 *   given([created]).when(touchTooSoon).thenNothing()
 *
 * The history is folded with the real `evolve`, so a case also proves that the events it starts from are
 * ones evolve understands, and `then` folds the produced events too, so a decision evolve cannot apply
 * fails the case rather than a later one.
 */

export type Decider<Command, Event, State> = {
  decide: (command: Command, state: State) => Event[];
  evolve: (state: State, event: Event) => State;
  initialState: () => State;
};

export type Outcome<Event, State> = { events: Event[]; state: State };

export type Expectation<Event, State> = {
  then(expected: readonly Event[]): Outcome<Event, State>;
  thenThrows(code: DomainErrorCode): DomainError;
  thenNothing(): State;
};

export function createDeciderSpec<Command, Event, State>(decider: Decider<Command, Event, State>) {
  const fold = (state: State, events: readonly Event[]) => {
    let next = state;
    for (const event of events) next = decider.evolve(next, event);
    return next;
  };

  return function given(history: readonly Event[] = []) {
    const state = fold(decider.initialState(), history);
    return {
      when(command: Command): Expectation<Event, State> {
        return {
          // biome-ignore lint/suspicious/noThenProperty: Given/When/Then is the vocabulary; nothing awaits this.
          then(expected) {
            const events = decider.decide(command, state);
            expect(events).toEqual(expected);
            return { events, state: fold(state, events) };
          },
          thenThrows(code) {
            let events: Event[];
            try {
              events = decider.decide(command, state);
            } catch (error) {
              expect(error).toBeInstanceOf(DomainError);
              expect((error as DomainError).code).toBe(code);
              return error as DomainError;
            }
            return expect.fail(`expected ${code}, but decide returned ${JSON.stringify(events)}`);
          },
          thenNothing() {
            expect(decider.decide(command, state)).toEqual([]);
            return state;
          },
        };
      },
    };
  };
}

export const given = createDeciderSpec<SessionCommand, SessionEvent, SessionState>({
  decide,
  evolve,
  initialState: initialSessionState,
});

export const givenUser = createDeciderSpec<UserCommand, UserEvent, UserState>({
  decide: decideUser,
  evolve: evolveUser,
  initialState: initialUserState,
});
