import { LabelSelectorError, matchesLabels, parseLabelSelector } from './label-selector.js';

describe('label selectors', () => {
  const labels = { app: 'web', tier: 'front', 'example.com/team': 'a' };
  test.each([
    ['', true],
    ['app=web', true],
    ['app==web', true],
    ['app!=web', false],
    ['app=db', false],
    ['app in (db, web)', true],
    ['app notin (db,web)', false],
    ['missing notin (x)', true],
    ['missing!=x', true],
    ['tier', true],
    ['!tier', false],
    ['!missing', true],
    ['app=web,tier=front,example.com/team=a', true],
    ['app=web, tier=back', false],
  ])('%j matches: %s', (selector, expected) => {
    expect(matchesLabels(parseLabelSelector(selector), labels)).toBe(expected);
  });

  test.each(['app in (a', '=x', 'a b', 'app=web,,x', 'app=-bad'])('%j is not a selector', (selector) => {
    expect(() => parseLabelSelector(selector)).toThrow(LabelSelectorError);
  });

  test('an empty value is allowed (app= selects labels with an empty value)', () => {
    expect(matchesLabels(parseLabelSelector('app='), { app: '' })).toBe(true);
  });
});
